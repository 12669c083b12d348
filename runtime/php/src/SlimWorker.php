<?php

declare(strict_types=1);

namespace Tusk\Runtime;

use Slim\App;
use Slim\Exception\InvalidMethodException;
use Slim\Http\Body;
use Slim\Http\Cookies;
use Slim\Http\Environment;
use Slim\Http\Headers;
use Slim\Http\Request;
use Slim\Http\UploadedFile;
use Slim\Http\Uri;

/**
 * Worker mode for a Slim 3 application (Debian's php-slim): the handler file returns the
 * Slim\App with its routes; each HTTP event becomes a Slim\Http\Request (Slim's own PSR-7
 * class, so route callbacks keep `$request->getParam()`, `$response->withJson()`…) and runs
 * through App::process() the way App::run() would, minus sending: the PSR-7 response becomes
 * the API Gateway response. (Slim 4 apps are PSR-15 handlers and take the Psr7Bridge path.)
 *
 * Slim 3 reads the request from its container (`request`, `environment`) in a few places
 * (finalize(), error handlers, user code): both entries are replaced with this request's for
 * each event, and `response` is rebuilt from the app's own definition, so nothing of one
 * request's objects reaches the next.
 */
final class SlimWorker
{
    private readonly \Closure $newResponse;

    public function __construct(private readonly App $app)
    {
        $container = $app->getContainer();
        // Pimple keeps the raw definition: calling it gives a fresh response per request, with
        // the app's settings (httpVersion, default headers).
        $this->newResponse = \Closure::fromCallable($container->raw('response'));
    }

    public function handle(mixed $event, object $context): array
    {
        $http = HttpEvent::fromEvent($event, 'a Slim application');
        return Worker::run($http, function () use ($http, $context): array {
            $container = $this->app->getContainer();
            $env = new Environment($_SERVER);
            $request = $this->request($http, $env, $context);
            unset($container['environment'], $container['request']);
            $container['environment'] = $env;
            $container['request'] = $request;
            $response = ($this->newResponse)($container);

            $app = $this->app;
            [$response, $output] = Worker::capture(function () use ($app, $request, $response) {
                try {
                    return $app->process($request, $response);
                } catch (InvalidMethodException $e) {
                    return (fn () => $this->processInvalidMethod($e->getRequest(), $response))->call($app);
                }
            });
            // The app's `outputBuffering` setting decides what happens to echoed output, as in
            // App::run(): 'append' (Slim's default), 'prepend', or false (dropped).
            if ($output !== '' && $response->getBody()->isWritable()) {
                $mode = $container->get('settings')['outputBuffering'] ?? 'append';
                if ($mode === 'prepend') {
                    $body = new Body(\fopen('php://temp', 'r+'));
                    $body->write($output . $response->getBody());
                    $response = $response->withBody($body);
                } elseif ($mode === 'append') {
                    $response->getBody()->write($output);
                }
            }
            $response = (fn () => $this->finalize($response))->call($app);
            return Psr7Bridge::fromResponse($response, $http->v2);
        });
    }

    private function request(HttpEvent $http, Environment $env, object $context): Request
    {
        $stream = \fopen('php://temp', 'w+');
        \fwrite($stream, $http->body);
        \rewind($stream);
        $headers = Headers::createFromEnvironment($env);
        $request = new Request(
            $http->method,
            Uri::createFromEnvironment($env),
            $headers,
            Cookies::parseHeader($headers->get('Cookie', [])),
            $env->all(),
            new Body($stream),
            self::files($http->files),
        );
        // As Request::createFromEnvironment() does with $_POST: Slim parses urlencoded and JSON
        // bodies itself, but needs multipart fields handed over.
        if ($http->formFields !== null && $http->method === 'POST') {
            $request = $request->withParsedBody($http->formFields);
        }
        return $request
            ->withAttribute('lambda-event', $http->event)
            ->withAttribute('lambda-context', $context);
    }

    private static function files(array $files): array
    {
        $out = [];
        foreach ($files as $name => $file) {
            $out[$name] = $file instanceof EventFile
                ? new UploadedFile($file->path, $file->clientName, $file->type, $file->size, $file->error, false)
                : self::files((array) $file);
        }
        return $out;
    }
}
