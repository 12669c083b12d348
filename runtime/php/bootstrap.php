<?php

declare(strict_types=1);

/*
 * Tusk PHP function runtime — `php-8x` (function) and `php-8x-console` (console). Bref-compatible.
 *
 * Speaks the Lambda Runtime API over one kept-alive HTTP/1.1 connection:
 *   GET  /runtime/invocation/next  →  run the handler  →  POST /runtime/invocation/{id}/response | /error
 * and POST /runtime/init/error when the handler cannot be loaded (then exit 1).
 *
 * Started by Tusk with cwd = the function's package directory, as:
 *
 *   php -d display_errors=stderr -d log_errors=0 -d html_errors=0 -d variables_order=EGPCS \
 *       -d memory_limit=<memorySize>M \
 *       -d opcache.enable_cli=1 -d opcache.file_cache=<writable dir, one per function version> \
 *       -d opcache.file_cache_only=1 \
 *       <this directory>/bootstrap.php
 *
 * (Without a file-cache directory, pass `-d opcache.enable_cli=0` instead of the three opcache
 * flags: an in-memory opcache only slows a CLI process's start.)
 *
 * Environment in: AWS_LAMBDA_RUNTIME_API (host:port), _HANDLER, LAMBDA_TASK_ROOT,
 * AWS_LAMBDA_FUNCTION_NAME/VERSION/MEMORY_SIZE, AWS_REGION, TZ, the function's own variables, and
 *   TUSK_MAX_INVOCATIONS  exit(0) after this many invocations (0 = unlimited; BREF_LOOP_MAX too)
 *   TUSK_MAX_MEMORY_MB    exit(0) after an invocation that left PHP holding more memory than this
 *   TUSK_RUNTIME_MODE     `console` for php-8x-console; unset for the function runtime
 *   TUSK_PHP_SHARE        where Debian's PHP libraries live (default /usr/share/php)
 * README.md next to this file describes the whole contract.
 *
 * This file is on the cold-start path: no Composer, no other file loaded unless needed.
 */

namespace Tusk\Runtime;

const API_VERSION = '2018-06-01';

/** Flags for every JSON document we send back. */
const JSON_OUT = \JSON_THROW_ON_ERROR | \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_PRESERVE_ZERO_FRACTION;

/** An error with a Lambda-style errorType that is not a PHP class name (e.g. Runtime.NoSuchHandler). */
final class RuntimeError extends \RuntimeException
{
    public function __construct(public readonly string $errorType, string $message)
    {
        parent::__construct($message);
    }
}

/** Lost the connection to the Runtime API (retried on a fresh connection). */
final class ConnectionLost extends \RuntimeException
{
}

/** The Runtime API stayed unreachable after several attempts: the instance is finished. */
final class ApiUnreachable extends \RuntimeException
{
}

/**
 * Minimal HTTP/1.1 client for the Runtime API: one kept-alive TCP connection, Content-Length and
 * chunked response bodies, reconnects when the server closed the connection.
 */
final class RuntimeApi
{
    /** @var resource|null */
    private $sock = null;

    public function __construct(private readonly string $hostPort)
    {
    }

    /**
     * @param array<string,string> $headers
     * @return array{0:int,1:array<string,string>,2:string} status, lower-cased headers, body
     */
    public function request(string $method, string $path, ?string $body = null, array $headers = []): array
    {
        $req = $method . ' /' . API_VERSION . $path . " HTTP/1.1\r\nHost: " . $this->hostPort . "\r\n";
        foreach ($headers as $name => $value) {
            $req .= $name . ': ' . $value . "\r\n";
        }
        if ($body !== null) {
            $req .= "Content-Type: application/json\r\nContent-Length: " . \strlen($body) . "\r\n\r\n" . $body;
        } else {
            $req .= "\r\n";
        }

        for ($attempt = 1; ; $attempt++) {
            try {
                if ($this->sock === null || \feof($this->sock)) {
                    $this->connect();
                }
                $this->write($req);
                return $this->readResponse();
            } catch (ConnectionLost $e) {
                $this->close();
                if ($attempt >= 5) {
                    throw new ApiUnreachable("Runtime API at {$this->hostPort} unreachable: " . $e->getMessage(), 0, $e);
                }
                \usleep(10_000 * $attempt * $attempt);
            }
        }
    }

    private function connect(): void
    {
        $ctx = \stream_context_create(['socket' => ['tcp_nodelay' => true]]);
        $sock = @\stream_socket_client('tcp://' . $this->hostPort, $errno, $errstr, 5.0, \STREAM_CLIENT_CONNECT, $ctx);
        if ($sock === false) {
            throw new ConnectionLost("connect failed: $errstr ($errno)");
        }
        // `next` blocks until there is work: never time out a read.
        \stream_set_timeout($sock, -1);
        $this->sock = $sock;
    }

    private function close(): void
    {
        if ($this->sock !== null) {
            @\fclose($this->sock);
            $this->sock = null;
        }
    }

    private function write(string $data): void
    {
        $len = \strlen($data);
        $done = 0;
        while ($done < $len) {
            $n = @\fwrite($this->sock, $done === 0 ? $data : \substr($data, $done));
            if ($n === false || $n === 0) {
                throw new ConnectionLost('write failed');
            }
            $done += $n;
        }
    }

    /** @return array{0:int,1:array<string,string>,2:string} */
    private function readResponse(): array
    {
        $sock = $this->sock;
        $line = \fgets($sock);
        if ($line === false || $line === '') {
            throw new ConnectionLost('connection closed by the server');
        }
        if (\strncmp($line, 'HTTP/1.', 7) !== 0) {
            throw new ConnectionLost('bad status line: ' . \rtrim($line));
        }
        $status = (int) \substr($line, 9, 3);
        $headers = [];
        while (true) {
            $line = \fgets($sock);
            if ($line === false) {
                throw new ConnectionLost('connection closed while reading headers');
            }
            $line = \rtrim($line, "\r\n");
            if ($line === '') {
                break;
            }
            $colon = \strpos($line, ':');
            if ($colon !== false) {
                $headers[\strtolower(\substr($line, 0, $colon))] = \trim(\substr($line, $colon + 1));
            }
        }

        if (isset($headers['transfer-encoding']) && \stripos($headers['transfer-encoding'], 'chunked') !== false) {
            $body = $this->readChunked();
        } elseif (isset($headers['content-length'])) {
            $len = (int) $headers['content-length'];
            $body = $len > 0 ? \stream_get_contents($sock, $len) : '';
            if ($body === false || \strlen($body) !== $len) {
                throw new ConnectionLost('connection closed while reading the body');
            }
        } elseif ($status === 204 || $status === 304 || $status < 200) {
            $body = '';
        } else {
            // No framing: the body runs until the server closes the connection.
            $body = (string) \stream_get_contents($sock);
            $headers['connection'] = 'close';
        }

        if (isset($headers['connection']) && \strcasecmp($headers['connection'], 'close') === 0) {
            $this->close();
        }
        return [$status, $headers, $body];
    }

    private function readChunked(): string
    {
        $body = '';
        while (true) {
            $line = \fgets($this->sock);
            if ($line === false) {
                throw new ConnectionLost('connection closed inside a chunked body');
            }
            $size = \hexdec(\trim(\explode(';', $line, 2)[0]));
            if ($size === 0) {
                // Trailers, then the final empty line.
                do {
                    $line = \fgets($this->sock);
                } while ($line !== false && \rtrim($line, "\r\n") !== '');
                return $body;
            }
            $chunk = \stream_get_contents($this->sock, (int) $size);
            if ($chunk === false || \strlen($chunk) !== (int) $size) {
                throw new ConnectionLost('connection closed inside a chunk');
            }
            $body .= $chunk;
            \fgets($this->sock); // CRLF after the chunk data
        }
    }
}

/** Mutable runtime state shared with the shutdown function. */
final class State
{
    public ?string $invocationId = null;
    public bool $initializing = true;
}

/** @return array{errorType:string,errorMessage:string,stackTrace:list<string>} */
function error_payload(\Throwable $e): array
{
    return [
        'errorType' => $e instanceof RuntimeError ? $e->errorType : \get_class($e),
        'errorMessage' => $e->getMessage(),
        'stackTrace' => $e instanceof RuntimeError ? [] : \explode("\n", $e->getTraceAsString()),
    ];
}

/** Print an uncaught-style report to stderr, the way PHP itself would. */
function log_throwable(\Throwable $e, string $prefix = 'Fatal error: Uncaught'): void
{
    if ($e instanceof RuntimeError) {
        // First line only: console errors carry the command's output, already in the logs.
        \fwrite(\STDERR, "$prefix {$e->errorType}: " . \strtok($e->getMessage(), "\n") . "\n");
        return;
    }
    $msg = "$prefix " . \get_class($e) . ': ' . $e->getMessage() . ' in ' . $e->getFile() . ':' . $e->getLine()
        . "\nStack trace:\n" . $e->getTraceAsString() . "\n";
    for ($prev = $e->getPrevious(); $prev !== null; $prev = $prev->getPrevious()) {
        $msg .= 'Caused by: ' . \get_class($prev) . ': ' . $prev->getMessage() . ' in ' . $prev->getFile() . ':' . $prev->getLine() . "\n";
    }
    \fwrite(\STDERR, $msg);
}

function post_json(RuntimeApi $api, string $path, array $payload, array $headers = []): int
{
    try {
        $json = \json_encode($payload, JSON_OUT | \JSON_INVALID_UTF8_SUBSTITUTE | \JSON_PARTIAL_OUTPUT_ON_ERROR);
    } catch (\JsonException) {
        $json = '{"errorType":"Runtime.Unknown","errorMessage":"unencodable error","stackTrace":[]}';
    }
    return $api->request('POST', $path, $json, $headers)[0];
}

/** Falls back to the runtime's own copies / Debian's packages for classes the user's vendor lacks. */
function register_fallback_autoloader(): void
{
    $share = \rtrim((string) (\getenv('TUSK_PHP_SHARE') ?: '/usr/share/php'), '/');
    $own = __DIR__ . '/src';
    $prefixes = [
        'Psr\\Http\\Server\\' => "$own/Psr/Http/Server/",
        'Psr\\Http\\Message\\' => "$share/Psr/Http/Message/",
        'Nyholm\\Psr7\\' => "$share/Nyholm/Psr7/",
        'Http\\Message\\' => "$share/Http/Message/",
    ];
    // Appended (not prepended): Composer's autoloader, registered earlier with prepend, wins.
    \spl_autoload_register(static function (string $class) use ($prefixes, $own): void {
        if ($class === 'Bref\\Context\\Context') {
            require $own . '/Context.php';
            return;
        }
        // The runtime's own classes (bridges, console mode): one file each in src/, loaded only
        // when a handler of that kind is detected.
        if (\strncmp($class, 'Tusk\\Runtime\\', 13) === 0) {
            $name = \substr($class, 13);
            $file = $own . '/' . ($name === 'EventFile' ? 'HttpEvent' : $name) . '.php';
            if (!\str_contains($name, '\\') && \is_file($file)) {
                require $file;
            }
            return;
        }
        foreach ($prefixes as $prefix => $dir) {
            if (\strncmp($class, $prefix, \strlen($prefix)) === 0) {
                $file = $dir . \str_replace('\\', '/', \substr($class, \strlen($prefix))) . '.php';
                if (\is_file($file)) {
                    require $file;
                }
                return;
            }
        }
    });
}

/** `require` in an empty scope, so the handler file sees no runtime variables. */
function require_isolated(string $file): mixed
{
    return require $file;
}

/**
 * Requires the handler file. $_SERVER['SCRIPT_FILENAME'] is hidden meanwhile: Symfony Runtime's
 * `vendor/autoload_runtime.php` would otherwise `require` that script (bootstrap.php itself)
 * and run it as the application, instead of letting the front controller return its closure.
 */
function require_handler_file(string $file): mixed
{
    $script = $_SERVER['SCRIPT_FILENAME'] ?? null;
    unset($_SERVER['SCRIPT_FILENAME']);
    try {
        return require_isolated($file);
    } finally {
        $_SERVER['SCRIPT_FILENAME'] = $script ?? $file;
    }
}

/**
 * Worker mode for web frameworks: turns what a handler file returned into the function that
 * serves one HTTP event, or null when it is none of the known application kinds. Only
 * `instanceof` checks here: they never autoload, so plain function handlers load no bridge.
 *
 * @return (\Closure(mixed, object): mixed)|null
 */
function http_app(mixed $handler, string $taskRoot, int $depth = 0): ?\Closure
{
    if (!\is_object($handler)) {
        return null;
    }
    if ($handler instanceof \Psr\Http\Server\RequestHandlerInterface) {
        if (!\class_exists(\Nyholm\Psr7\ServerRequest::class)) {
            throw new RuntimeError('Runtime.MissingDependency', 'PSR-15 handlers need nyholm/psr7: `composer require nyholm/psr7`, or install the Debian package php-nyholm-psr7 on the node');
        }
        return static fn (mixed $event, object $context): mixed => Psr7Bridge::handle($handler, $event, $context);
    }
    // Laravel's Application is a Symfony HttpKernelInterface too: check it first.
    if ($handler instanceof \Illuminate\Foundation\Application) {
        return (new LaravelWorker($handler))->handle(...);
    }
    if ($handler instanceof \Symfony\Component\HttpKernel\HttpKernelInterface) {
        return (new SymfonyWorker($handler))->handle(...);
    }
    if ($handler instanceof \Slim\App) {
        if (!\class_exists(\Nyholm\Psr7\ServerRequest::class)) {
            throw new RuntimeError('Runtime.MissingDependency', 'Slim apps need nyholm/psr7 for the response conversion: install the Debian package php-nyholm-psr7 on the node');
        }
        return (new SlimWorker($handler))->handle(...);
    }
    // Symfony Runtime's front controller: it returns a closure that builds the application.
    if ($depth === 0 && $handler instanceof \Closure && symfony_runtime_loaded()) {
        $app = SymfonyWorker::callFrontController($handler, $taskRoot);
        return http_app($app, $taskRoot, 1) ?? throw new RuntimeError(
            'Runtime.InvalidHandler',
            'The front controller\'s closure returned ' . \get_debug_type($app) . '; in worker mode it must return a Symfony HttpKernelInterface, a PSR-15 RequestHandlerInterface, a Laravel Application or a Slim App',
        );
    }
    return null;
}

/** True when the app went through `vendor/autoload_runtime.php` (Symfony Runtime). */
function symfony_runtime_loaded(): bool
{
    foreach (\get_included_files() as $file) {
        if (\str_ends_with($file, '/autoload_runtime.php')) {
            return true;
        }
    }
    return false;
}

/**
 * Load the user's handler and return the function that runs one invocation.
 *
 * @return \Closure(mixed, object): mixed
 */
function load_handler(string $taskRoot, string $handlerName): \Closure
{
    if ($handlerName === '') {
        throw new RuntimeError('Runtime.NoSuchHandler', 'The _HANDLER environment variable is empty: set `handler:` in serverless.yml');
    }
    $file = $handlerName[0] === '/' ? $handlerName : $taskRoot . '/' . $handlerName;

    if (\is_file($file)) {
        $handler = require_handler_file($file);
        $what = "The handler file `$handlerName`";
    } elseif (\preg_match('/^\\\\?[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*(\\\\[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)*$/', $handlerName)
        && \class_exists($handlerName)) {
        $handler = new $handlerName();
        $what = "The handler class `$handlerName`";
    } else {
        $hint = \str_contains($handlerName, '\\') || !\str_contains($handlerName, '.')
            ? ' (not a file, and no such class: is vendor/autoload.php deployed?)'
            : '';
        throw new RuntimeError('Runtime.NoSuchHandler', "Handler `$handlerName` doesn't exist in $taskRoot$hint");
    }

    $app = http_app($handler, $taskRoot);
    if ($app !== null) {
        return $app;
    }
    if (\is_object($handler) && !($handler instanceof \Closure) && \method_exists($handler, 'handle')) {
        return static fn (mixed $event, object $context): mixed => $handler->handle($event, $context);
    }
    if (\is_callable($handler)) {
        return static fn (mixed $event, object $context): mixed => $handler($event, $context);
    }
    // A classic front controller (Laravel's public/index.php, a legacy index.php) runs the
    // request itself and returns nothing useful: say where such apps belong.
    $hint = $handler === 1 || $handler === null
        ? ' (a front controller that handles the request itself belongs on `runtime: php-82-fpm`; for Laravel in worker mode use `handler: bootstrap/app.php`)'
        : '';
    throw new RuntimeError(
        'Runtime.InvalidHandler',
        "$what must return a callable, a PSR-15 RequestHandlerInterface, a Symfony HttpKernel, a Laravel Application, a Slim App or an object with a handle(\$event, \$context) method; got " . \get_debug_type($handler) . $hint,
    );
}

function main(): void
{
    $apiHost = (string) \getenv('AWS_LAMBDA_RUNTIME_API');
    if ($apiHost === '') {
        \fwrite(\STDERR, "AWS_LAMBDA_RUNTIME_API is not set: this script is started by Tusk, not by hand\n");
        exit(1);
    }
    $api = new RuntimeApi($apiHost);
    $state = new State();
    $taskRoot = \rtrim((string) (\getenv('LAMBDA_TASK_ROOT') ?: \getcwd()), '/');
    $handlerName = (string) \getenv('_HANDLER');
    $console = \getenv('TUSK_RUNTIME_MODE') === 'console';
    $max = (int) (\getenv('TUSK_MAX_INVOCATIONS') ?: \getenv('BREF_LOOP_MAX') ?: 0);
    $maxMemory = (int) (\getenv('TUSK_MAX_MEMORY_MB') ?: 0) * 1024 * 1024;

    // A fatal error (or exit()) while loading or running the handler kills the process; report it
    // to the Runtime API first so the caller gets a useful error, then let the process die.
    \register_shutdown_function(static function () use ($api, $state): void {
        if (!$state->initializing && $state->invocationId === null) {
            return;
        }
        \ini_set('memory_limit', '-1');
        $err = \error_get_last();
        if ($err !== null && ($err['type'] & (\E_ERROR | \E_PARSE | \E_CORE_ERROR | \E_COMPILE_ERROR | \E_USER_ERROR | \E_RECOVERABLE_ERROR)) !== 0) {
            $message = "PHP Fatal error: {$err['message']} in {$err['file']} on line {$err['line']}";
        } else {
            // exit() inside an HTTP request in worker mode: answer like php-fpm (the output so
            // far), then let this instance end; the node starts a fresh one for the next request.
            if (!$state->initializing && \class_exists(Worker::class, false) && Worker::$current !== null) {
                try {
                    $json = \json_encode(Worker::exitResponse(Worker::$current), JSON_OUT | \JSON_INVALID_UTF8_SUBSTITUTE);
                    $api->request('POST', '/runtime/invocation/' . $state->invocationId . '/response', $json);
                    \fwrite(\STDERR, "Tusk: the application called exit() during an HTTP request: response sent, instance replaced\n");
                    return;
                } catch (\Throwable) {
                    // Fall through to the error report.
                }
            }
            $message = 'The function called exit() ' . ($state->initializing ? 'while loading the handler' : 'during the invocation');
        }
        $payload = ['errorType' => 'Runtime.ExitError', 'errorMessage' => $message, 'stackTrace' => []];
        try {
            if ($state->initializing) {
                post_json($api, '/runtime/init/error', $payload, ['Lambda-Runtime-Function-Error-Type' => 'Runtime.ExitError']);
            } else {
                post_json($api, '/runtime/invocation/' . $state->invocationId . '/error', $payload, ['Lambda-Runtime-Function-Error-Type' => 'Runtime.ExitError']);
            }
        } catch (\Throwable) {
            // The process is going away anyway; Tusk reports the exit.
        }
    });

    register_fallback_autoloader();
    $jsonFlags = JSON_OUT;

    // Everything printed goes to stdout (the logs) through this handler, never through PHP's
    // own output layer: in the CLI SAPI the first byte out marks headers as sent, and from then
    // on session_start(), session_id() and session ini changes fail, which in worker mode would
    // break (or leak) sessions for the rest of the instance's life.
    if (!$console) {
        \ob_start(static function (string $out): string {
            if ($out !== '') {
                \fwrite(\STDOUT, $out);
            }
            return '';
        }, 1);
    }

    try {
        if ($console) {
            $invoke = Console::prepare($taskRoot, $handlerName);
            $jsonFlags |= \JSON_INVALID_UTF8_SUBSTITUTE;
        } else {
            if (\is_file($taskRoot . '/vendor/autoload.php')) {
                require_isolated($taskRoot . '/vendor/autoload.php');
            }
            $invoke = load_handler($taskRoot, $handlerName);
        }
    } catch (\Throwable $e) {
        log_throwable($e);
        $payload = error_payload($e);
        try {
            post_json($api, '/runtime/init/error', $payload, ['Lambda-Runtime-Function-Error-Type' => $payload['errorType']]);
        } catch (\Throwable $e2) {
            \fwrite(\STDERR, $e2->getMessage() . "\n");
        }
        $state->initializing = false;
        exit(1);
    }
    $state->initializing = false;

    try {
        serve($api, $state, $invoke, $jsonFlags, $max, $maxMemory);
    } catch (ApiUnreachable $e) {
        $state->invocationId = null;
        \fwrite(\STDERR, $e->getMessage() . "\n");
        exit(1);
    }
}

/** The invocation loop. */
function serve(RuntimeApi $api, State $state, \Closure $invoke, int $jsonFlags, int $max, int $maxMemory = 0): void
{
    $obLevel = \ob_get_level();

    for ($count = 1; ; $count++) {
        [$status, $h, $body] = $api->request('GET', '/runtime/invocation/next');
        if ($status !== 200) {
            \fwrite(\STDERR, "Runtime API: GET /runtime/invocation/next answered $status: $body\n");
            exit(1);
        }
        $id = $h['lambda-runtime-aws-request-id'] ?? '';
        $traceId = $h['lambda-runtime-trace-id'] ?? '';
        \putenv($traceId !== '' ? '_X_AMZN_TRACE_ID=' . $traceId : '_X_AMZN_TRACE_ID');
        $context = new \Bref\Context\Context(
            $id,
            (int) ($h['lambda-runtime-deadline-ms'] ?? 0),
            $h['lambda-runtime-invoked-function-arn'] ?? '',
            $traceId,
            $h['lambda-runtime-client-context'] ?? null,
            $h['lambda-runtime-cognito-identity'] ?? null,
        );
        $state->invocationId = $id = \rawurlencode($id);

        try {
            // An empty payload is an empty event (`{}`), as on Lambda.
            $event = $body === '' ? [] : \json_decode($body, true, 100_000, \JSON_THROW_ON_ERROR);
            $result = $invoke($event, $context);
            $json = \json_encode($result, $jsonFlags);
            $error = null;
        } catch (\Throwable $e) {
            $error = $e;
        }
        while (\ob_get_level() > $obLevel) {
            \ob_end_flush();
        }

        if ($error === null) {
            $status = $api->request('POST', "/runtime/invocation/$id/response", $json)[0];
            if ($status === 413) {
                $error = new RuntimeError('Function.ResponseSizeTooLarge', 'Response payload size (' . \strlen($json) . ' bytes) exceeded the maximum allowed payload size');
            } elseif ($status >= 300) {
                \fwrite(\STDERR, "Runtime API: POST /runtime/invocation/$id/response answered $status\n");
            }
        }
        if ($error !== null) {
            log_throwable($error);
            $payload = error_payload($error);
            post_json($api, "/runtime/invocation/$id/error", $payload, ['Lambda-Runtime-Function-Error-Type' => $payload['errorType']]);
        }
        $state->invocationId = null;
        unset($event, $result, $json, $error, $payload, $context, $body);

        if ($max > 0 && $count >= $max) {
            exit(0);
        }
        // Recycling on memory growth (an app that leaks a little per request): the response is
        // already out, so leaving now costs no request; the node starts a fresh instance.
        if ($maxMemory > 0 && \memory_get_usage() > $maxMemory) {
            \fwrite(\STDERR, 'Tusk: instance recycled after ' . $count . ' invocations: memory ' . \intdiv(\memory_get_usage(), 1048576) . " MB > TUSK_MAX_MEMORY_MB\n");
            exit(0);
        }
    }
}

main();
