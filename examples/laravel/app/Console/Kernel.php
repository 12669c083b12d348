<?php

namespace App\Console;

use Illuminate\Console\Scheduling\Schedule;
use Illuminate\Foundation\Console\Kernel as ConsoleKernel;

class Kernel extends ConsoleKernel
{
    protected $commands = [
        Commands\Greet::class,
        \Illuminate\Console\Scheduling\ScheduleRunCommand::class,
        \Illuminate\Console\Scheduling\ScheduleListCommand::class,
    ];

    protected function schedule(Schedule $schedule): void
    {
        // `artisan schedule:run` (a Tusk schedule event, every minute) runs what is due.
        $schedule->command('app:greet scheduler')->everyMinute();
    }
}
