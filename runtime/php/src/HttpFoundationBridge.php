<?php

declare(strict_types=1);

namespace Tusk\Runtime;

use Symfony\Component\HttpFoundation\BinaryFileResponse;
use Symfony\Component\HttpFoundation\File\UploadedFile;
use Symfony\Component\HttpFoundation\Request;
use Symfony\Component\HttpFoundation\Response;
use Symfony\Component\HttpFoundation\StreamedResponse;

/**
 * API Gateway event ⇄ Symfony HttpFoundation, shared by the Symfony and Laravel bridges
 * (Illuminate\Http\Request extends Symfony's Request).
 */
final class HttpFoundationBridge
{
    /**
     * @param class-string<Request> $requestClass
     * @param class-string<UploadedFile> $fileClass
     */
    public static function request(HttpEvent $http, object $context, string $requestClass = Request::class, string $fileClass = UploadedFile::class): Request
    {
        $request = new $requestClass(
            $http->queryParams,
            $http->formFields ?? [],
            ['lambda-event' => $http->event, 'lambda-context' => $context],
            $http->cookies,
            self::files($http->files, $fileClass),
            $http->server,
            $http->body,
        );
        return $request;
    }

    /**
     * The API Gateway response for a HttpFoundation response. `$before` (output the app printed
     * while handling the request) goes in front of the body.
     */
    public static function response(Response $response, Request $request, bool $v2, string $before = ''): array
    {
        // What Response::send() callers get from the framework: HEAD bodies dropped, charset and
        // Content-Type completed, protocol version and cache headers fixed.
        $response->prepare($request);
        if ($response instanceof StreamedResponse || $response instanceof BinaryFileResponse) {
            [, $body] = Worker::capture(static function () use ($response): void {
                $response->sendContent();
            });
        } else {
            $body = (string) $response->getContent();
        }
        $headers = $response->headers->allPreserveCaseWithoutCookies();
        if ($before !== '') {
            $body = $before . $body;
            unset($headers['Content-Length']);
        }
        $cookies = [];
        foreach ($response->headers->getCookies() as $cookie) {
            $cookies[] = (string) $cookie;
        }
        return HttpEvent::response($v2, $response->getStatusCode(), $headers, $cookies, $request->isMethod('HEAD') ? '' : $body);
    }

    /** EventFile trees → UploadedFile objects in "test" mode (the file did not come from PHP's own upload handling, so move() must rename rather than move_uploaded_file()). */
    private static function files(array $files, string $fileClass): array
    {
        $out = [];
        foreach ($files as $name => $file) {
            if ($file instanceof EventFile) {
                // Symfony's FileBag turns "no file" entries into null, as for $_FILES.
                $out[$name] = $file->error === \UPLOAD_ERR_NO_FILE
                    ? null
                    : new $fileClass($file->path, $file->clientName, $file->type, $file->error, true);
            } else {
                $out[$name] = self::files((array) $file, $fileClass);
            }
        }
        return $out;
    }
}
