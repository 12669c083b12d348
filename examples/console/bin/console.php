#!/usr/bin/env php
<?php

declare(strict_types=1);

/*
 * A tiny console "application" for the php-82-console runtime. Each invocation runs
 *   php bin/console.php <arguments from the event>
 * Prints its arguments (stdout) and a note (stderr), then exits with the code given by --exit=N.
 * Try: tusk invoke console --data '"greet --name=\"Ada Lovelace\" --exit=0"'
 */

$args = array_slice($argv, 1);
$exitCode = 0;
$sleep = 0;
foreach ($args as $arg) {
    if (preg_match('/^--exit=(\d+)$/', $arg, $m)) {
        $exitCode = (int) $m[1];
    } elseif (preg_match('/^--sleep=(\d+)$/', $arg, $m)) {
        $sleep = (int) $m[1];
    }
}

echo 'argv: ' . json_encode($args, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE) . "\n";
echo 'function: ' . (getenv('AWS_LAMBDA_FUNCTION_NAME') ?: '?') . ', php ' . PHP_VERSION . "\n";
fwrite(STDERR, "stderr is captured too\n");
if ($sleep > 0) {
    sleep($sleep);
}
if ($exitCode !== 0) {
    fwrite(STDERR, "exiting with status $exitCode\n");
}
exit($exitCode);
