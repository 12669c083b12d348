<?php

declare(strict_types=1);

namespace Tusk\Runtime;

/**
 * Console mode (`php-8x-console`, TUSK_RUNTIME_MODE=console), Bref-compatible.
 *
 * Each invocation runs `php [same -d flags as this process] <_HANDLER> <args...>` as a child
 * process (argv array, no shell), in the task root, with this process's environment plus
 * LAMBDA_INVOCATION_CONTEXT (the Context as JSON). stdout and stderr are combined, streamed to our
 * stdout (so they land in the function's logs) and returned.
 *
 * Event: a string of arguments split like a POSIX shell would (`"cache:clear --env=prod"`),
 * Bref's `{"cli": "..."}`, or a JSON list of arguments (`["cache:clear", "--env=prod"]`).
 * Result: `{"output": "...", "exitCode": 0}`; a non-zero exit is an invocation error
 * (errorType Runtime.ConsoleExitError, message `The command exited with a non-zero status code: N`
 * followed by the tail of the output). The command is killed one second before the deadline.
 */
final class Console
{
    /** Output kept for the response (the end is kept: it is usually what matters). */
    private const MAX_OUTPUT = 4 * 1024 * 1024;
    /** Output tail quoted in an error message. */
    private const ERROR_TAIL = 4096;

    public static function prepare(string $taskRoot, string $handlerName): \Closure
    {
        $file = $handlerName !== '' && $handlerName[0] === '/' ? $handlerName : $taskRoot . '/' . $handlerName;
        if ($handlerName === '' || !\is_file($file)) {
            throw new RuntimeError('Runtime.NoSuchHandler', "Handler `$handlerName` doesn't exist in $taskRoot: the console runtime's handler is the PHP script to run (e.g. bin/console)");
        }
        $php = self::phpCommand();
        return static fn (mixed $event, object $context): array => self::run([...$php, $file, ...self::arguments($event)], $taskRoot, $context);
    }

    /** @return list<string> */
    public static function arguments(mixed $event): array
    {
        if ($event === null || $event === '') {
            return [];
        }
        if (\is_string($event)) {
            return self::split($event);
        }
        if (\is_array($event) && \array_key_exists('cli', $event) && (\is_string($event['cli']) || $event['cli'] === null)) {
            return self::split((string) $event['cli']);
        }
        if (\is_array($event) && \array_is_list($event) && \array_filter($event, static fn ($a) => !\is_string($a) && !\is_int($a) && !\is_float($a)) === []) {
            return \array_map('strval', $event);
        }
        throw new \InvalidArgumentException('A console function takes a string of arguments ("cache:clear --env=prod"), {"cli": "..."} or a list of arguments; got ' . \get_debug_type($event));
    }

    /**
     * Split a command line into arguments the way a POSIX shell does: whitespace separates,
     * '...' is literal, "..." allows \" \\ \$ \` escapes, a backslash outside quotes escapes
     * the next character. No expansion of any kind.
     *
     * @return list<string>
     */
    public static function split(string $line): array
    {
        $args = [];
        $current = '';
        $inArg = false;
        $len = \strlen($line);
        for ($i = 0; $i < $len; $i++) {
            $c = $line[$i];
            if ($c === "'") {
                $end = \strpos($line, "'", $i + 1);
                if ($end === false) {
                    throw new \InvalidArgumentException("Unterminated single quote in arguments: $line");
                }
                $current .= \substr($line, $i + 1, $end - $i - 1);
                $i = $end;
                $inArg = true;
            } elseif ($c === '"') {
                $inArg = true;
                for ($i++; $i < $len && $line[$i] !== '"'; $i++) {
                    if ($line[$i] === '\\' && $i + 1 < $len && \str_contains('"\\$`', $line[$i + 1])) {
                        $i++;
                    }
                    $current .= $line[$i];
                }
                if ($i >= $len) {
                    throw new \InvalidArgumentException("Unterminated double quote in arguments: $line");
                }
            } elseif ($c === '\\') {
                if ($i + 1 < $len) {
                    $current .= $line[++$i];
                }
                $inArg = true;
            } elseif ($c === ' ' || $c === "\t" || $c === "\n" || $c === "\r") {
                if ($inArg) {
                    $args[] = $current;
                    $current = '';
                    $inArg = false;
                }
            } else {
                $current .= $c;
                $inArg = true;
            }
        }
        if ($inArg) {
            $args[] = $current;
        }
        return $args;
    }

    /**
     * The PHP binary plus the ini options this process was started with (-d, -c, -n), read from
     * /proc/self/cmdline, so the command runs with the same settings.
     *
     * @return list<string>
     */
    private static function phpCommand(): array
    {
        $cmd = [\PHP_BINARY !== '' ? \PHP_BINARY : 'php'];
        $raw = @\file_get_contents('/proc/self/cmdline');
        if ($raw === false || $raw === '') {
            return $cmd;
        }
        $argv = \explode("\0", \rtrim($raw, "\0"));
        $script = $_SERVER['argv'][0] ?? null;
        for ($i = 1, $n = \count($argv); $i < $n; $i++) {
            $arg = $argv[$i];
            if ($arg === $script || $arg === '--' || $arg === '-f') {
                break;
            }
            if (($arg === '-d' || $arg === '-c') && $i + 1 < $n) {
                $cmd[] = $arg;
                $cmd[] = $argv[++$i];
            } elseif (\str_starts_with($arg, '-d') || \str_starts_with($arg, '-c') || $arg === '-n') {
                $cmd[] = $arg;
            } elseif (!\str_starts_with($arg, '-')) {
                break;
            }
        }
        return $cmd;
    }

    /** @param list<string> $command */
    private static function run(array $command, string $cwd, object $context): array
    {
        $env = \getenv();
        $env['LAMBDA_INVOCATION_CONTEXT'] = \json_encode($context, \JSON_UNESCAPED_SLASHES);
        $proc = \proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes, $cwd, $env);
        if (!\is_resource($proc)) {
            throw new \RuntimeException('Could not start ' . \implode(' ', $command));
        }
        $out = $pipes[1];
        \stream_set_blocking($out, false);

        $remainingMs = $context->getRemainingTimeInMillis();
        $timeout = $remainingMs > 0 ? \max(1.0, $remainingMs / 1000 - 1) : null;
        $killAt = $timeout === null ? null : \microtime(true) + $timeout;
        $output = '';
        $timedOut = false;
        while (true) {
            $read = [$out];
            $write = $except = null;
            if ($killAt === null) {
                $ready = @\stream_select($read, $write, $except, null);
            } else {
                $wait = \max(0.0, $killAt - \microtime(true));
                $ready = @\stream_select($read, $write, $except, (int) $wait, (int) (($wait - \floor($wait)) * 1e6));
            }
            if ($ready === false) {
                continue; // interrupted by a signal
            }
            if ($ready > 0) {
                $chunk = \fread($out, 65536);
                if ($chunk === false || ($chunk === '' && \feof($out))) {
                    break;
                }
                echo $chunk;
                $output .= $chunk;
                if (\strlen($output) > 2 * self::MAX_OUTPUT) {
                    $output = \substr($output, -self::MAX_OUTPUT);
                }
            } elseif ($killAt !== null && \microtime(true) >= $killAt) {
                $timedOut = true;
                \proc_terminate($proc, 9);
                break;
            }
        }
        \fclose($out);

        // proc_close() cannot tell "exit 9" from "killed by signal 9": ask proc_get_status().
        do {
            $status = \proc_get_status($proc);
            if ($status['running']) {
                if ($killAt !== null && !$timedOut && \microtime(true) >= $killAt) {
                    $timedOut = true;
                    \proc_terminate($proc, 9);
                }
                \usleep(200);
            }
        } while ($status['running']);
        \proc_close($proc);
        $exitCode = $status['signaled'] ? 128 + $status['termsig'] : $status['exitcode'];

        if (\strlen($output) > self::MAX_OUTPUT) {
            $output = \substr($output, -self::MAX_OUTPUT);
        }
        if ($timedOut) {
            throw new RuntimeError('Runtime.ConsoleTimeout', \sprintf("The command timed out after %.1f seconds and was killed\n%s", $timeout, self::tail($output)));
        }
        if ($exitCode !== 0) {
            throw new RuntimeError('Runtime.ConsoleExitError', "The command exited with a non-zero status code: $exitCode\n" . self::tail($output));
        }
        return ['output' => $output, 'exitCode' => $exitCode];
    }

    private static function tail(string $output): string
    {
        return \strlen($output) > self::ERROR_TAIL ? '…' . \substr($output, -self::ERROR_TAIL) : $output;
    }
}
