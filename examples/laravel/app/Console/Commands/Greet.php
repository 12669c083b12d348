<?php

namespace App\Console\Commands;

use Illuminate\Console\Command;

class Greet extends Command
{
    protected $signature = 'app:greet {name=world} {--fail : exit with status 3}';

    protected $description = 'Greets someone (an example command for tusk invoke)';

    public function handle(): int
    {
        $this->line('Hello ' . $this->argument('name') . ' from Laravel');
        return $this->option('fail') ? 3 : 0;
    }
}
