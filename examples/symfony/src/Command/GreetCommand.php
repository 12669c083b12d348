<?php

declare(strict_types=1);

namespace App\Command;

use Symfony\Component\Console\Command\Command;
use Symfony\Component\Console\Input\InputArgument;
use Symfony\Component\Console\Input\InputInterface;
use Symfony\Component\Console\Input\InputOption;
use Symfony\Component\Console\Output\OutputInterface;

/** `bin/console app:greet Ada [--fail]`: a command to run with `tusk invoke`. */
final class GreetCommand extends Command
{
    protected static $defaultName = 'app:greet';

    protected function configure(): void
    {
        $this->addArgument('name', InputArgument::OPTIONAL, 'who to greet', 'world')
            ->addOption('fail', null, InputOption::VALUE_NONE, 'exit with status 3');
    }

    protected function execute(InputInterface $input, OutputInterface $output): int
    {
        $output->writeln('Hello ' . $input->getArgument('name') . ' from Symfony');
        return $input->getOption('fail') ? 3 : Command::SUCCESS;
    }
}
