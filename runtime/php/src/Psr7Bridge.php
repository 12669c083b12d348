<?php

declare(strict_types=1);

namespace Tusk\Runtime;

use Nyholm\Psr7\ServerRequest;
use Nyholm\Psr7\Stream;
use Nyholm\Psr7\UploadedFile;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;
use Psr\Http\Server\RequestHandlerInterface;

/**
 * Runs a PSR-15 handler on an API Gateway HTTP event (payload v1 `http` or v2 `httpApi`):
 * event → PSR-7 ServerRequest (Nyholm) → handler → PSR-7 response → API Gateway response.
 *
 * Loaded only when the function's handler is a RequestHandlerInterface (or a Slim 3 app, whose
 * responses are PSR-7 too).
 *
 * Request attributes: the path parameters (`{id}` → 'id'), `lambda-event` (the raw event array)
 * and `lambda-context` (the Context). Parsed body: form-urlencoded, multipart/form-data (files
 * become UploadedFile objects backed by temp files removed after the invocation) and JSON.
 */
final class Psr7Bridge
{
    public static function handle(RequestHandlerInterface $handler, mixed $event, object $context): array
    {
        $http = HttpEvent::fromEvent($event, 'a PSR-15 RequestHandlerInterface');
        return Worker::run($http, static function () use ($handler, $http, $context): array {
            [$response, $before] = Worker::capture(static fn () => $handler->handle(self::toRequest($http, $context)));
            $out = self::fromResponse($response, $http->v2);
            if ($before !== '') {
                // Output printed while handling goes in front of the body, as php-fpm would send it.
                $body = $out['isBase64Encoded'] ? \base64_decode($out['body']) : $out['body'];
                $out = HttpEvent::response($http->v2, $response->getStatusCode(), $response->withoutHeader('Content-Length')->getHeaders(), [], $before . $body);
            }
            return $out;
        });
    }

    public static function toRequest(HttpEvent $http, object $context): ServerRequestInterface
    {
        $stream = Stream::create($http->body);
        $stream->rewind();
        try {
            $request = new ServerRequest($http->method, $http->uri, $http->headers, $stream, $http->protocolVersion, $http->server);
        } catch (\InvalidArgumentException) {
            // An unparsable URI: keep the path only.
            $request = new ServerRequest($http->method, $http->path, $http->headers, $stream, $http->protocolVersion, $http->server);
        }

        $request = $request
            ->withCookieParams($http->cookies)
            ->withQueryParams($http->queryParams)
            ->withParsedBody($http->formFields ?? $http->json())
            ->withUploadedFiles(self::files($http->files));
        foreach ($http->pathParameters as $name => $value) {
            $request = $request->withAttribute((string) $name, $value);
        }
        return $request
            ->withAttribute('lambda-event', $http->event)
            ->withAttribute('lambda-context', $context);
    }

    /**
     * v2 → {statusCode, headers (values joined with ", "), cookies[] (Set-Cookie), body,
     * isBase64Encoded}; v1 → {statusCode, multiValueHeaders, body, isBase64Encoded}.
     */
    public static function fromResponse(ResponseInterface $response, bool $v2): array
    {
        $stream = $response->getBody();
        if ($stream->isSeekable()) {
            $stream->rewind();
        }
        return HttpEvent::response($v2, $response->getStatusCode(), $response->getHeaders(), [], $stream->getContents());
    }

    private static function files(array $files): array
    {
        $out = [];
        foreach ($files as $name => $file) {
            if ($file instanceof EventFile) {
                $out[$name] = $file->path === ''
                    ? new UploadedFile(Stream::create(''), 0, $file->error, $file->clientName, $file->type)
                    : new UploadedFile($file->path, $file->size, $file->error, $file->clientName, $file->type);
            } else {
                $out[$name] = self::files((array) $file);
            }
        }
        return $out;
    }
}
