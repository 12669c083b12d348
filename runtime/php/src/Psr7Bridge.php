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
 * Loaded only when the function's handler is a RequestHandlerInterface.
 *
 * Request attributes: the path parameters (`{id}` → 'id'), `lambda-event` (the raw event array)
 * and `lambda-context` (the Context). Parsed body: form-urlencoded, multipart/form-data (files
 * become UploadedFile objects backed by temp files removed after the invocation) and JSON.
 *
 * Response: v2 → {statusCode, headers (values joined with ", "), cookies[] (Set-Cookie), body,
 * isBase64Encoded}; v1 → {statusCode, multiValueHeaders, body, isBase64Encoded}. Bodies that are
 * not valid UTF-8 (or all bodies when BREF_BINARY_RESPONSES=1) are base64-encoded.
 */
final class Psr7Bridge
{
    public static function handle(RequestHandlerInterface $handler, mixed $event, object $context): array
    {
        if (!\is_array($event) || !(isset($event['httpMethod']) || isset($event['requestContext']['http']['method']))) {
            throw new \InvalidArgumentException(
                'This handler is a PSR-15 RequestHandlerInterface, so it only accepts HTTP events '
                . '(`httpApi` or `http` events in serverless.yml); it was invoked with ' . \get_debug_type($event)
                . (\is_array($event) ? ' without httpMethod or requestContext.http.method' : '')
            );
        }
        $v2 = (string) ($event['version'] ?? '1.0') === '2.0';
        $tmpFiles = [];
        try {
            $request = self::toRequest($event, $context, $v2, $tmpFiles);
            $response = $handler->handle($request);
            return self::fromResponse($response, $v2);
        } finally {
            foreach ($tmpFiles as $file) {
                if (\is_file($file)) {
                    @\unlink($file);
                }
            }
        }
    }

    /** @param list<string> $tmpFiles receives the temp files created for uploads */
    public static function toRequest(array $event, object $context, bool $v2, array &$tmpFiles = []): ServerRequestInterface
    {
        $method = \strtoupper((string) ($v2 ? $event['requestContext']['http']['method'] : $event['httpMethod']));

        // Headers as name => list of values, names lower-cased.
        $headers = [];
        if (!$v2 && !empty($event['multiValueHeaders'])) {
            foreach ($event['multiValueHeaders'] as $name => $values) {
                $headers[\strtolower((string) $name)] = \array_map('strval', (array) $values);
            }
        } else {
            foreach (($event['headers'] ?? []) ?: [] as $name => $value) {
                $headers[\strtolower((string) $name)] = [(string) $value];
            }
        }
        if ($v2 && !empty($event['cookies'])) {
            $headers['cookie'] = [\implode('; ', $event['cookies'])];
        }

        $body = (string) ($event['body'] ?? '');
        if ($body !== '' && !empty($event['isBase64Encoded'])) {
            $body = (string) \base64_decode($body, false);
        }
        if ($body !== '' && !isset($headers['content-length'])) {
            $headers['content-length'] = [(string) \strlen($body)];
        }

        $path = (string) ($v2 ? ($event['rawPath'] ?? '/') : ($event['path'] ?? '/'));
        if ($path === '' || $path[0] !== '/') {
            $path = '/' . $path;
        }
        $query = $v2 ? (string) ($event['rawQueryString'] ?? '') : self::v1QueryString($event);
        $requestUri = $path . ($query !== '' ? '?' . $query : '');

        $protocol = (string) ($v2 ? ($event['requestContext']['http']['protocol'] ?? 'HTTP/1.1') : ($event['requestContext']['protocol'] ?? 'HTTP/1.1'));
        $version = \str_starts_with($protocol, 'HTTP/') ? \substr($protocol, 5) : '1.1';
        $https = \strtolower($headers['x-forwarded-proto'][0] ?? '') === 'https';
        $host = $headers['host'][0] ?? '';
        $serverName = $host !== '' ? \preg_replace('/:\d+$/', '', $host) : 'localhost';
        $port = $headers['x-forwarded-port'][0] ?? (\preg_match('/:(\d+)$/', $host, $m) ? $m[1] : ($https ? '443' : '80'));
        $sourceIp = (string) ($v2 ? ($event['requestContext']['http']['sourceIp'] ?? '127.0.0.1') : ($event['requestContext']['identity']['sourceIp'] ?? '127.0.0.1'));

        $server = [
            'SERVER_PROTOCOL' => 'HTTP/' . $version,
            'REQUEST_METHOD' => $method,
            'REQUEST_TIME' => \time(),
            'REQUEST_TIME_FLOAT' => \microtime(true),
            'QUERY_STRING' => $query,
            'DOCUMENT_ROOT' => (string) \getcwd(),
            'REQUEST_URI' => $requestUri,
            'SCRIPT_NAME' => '',
            'REMOTE_ADDR' => $sourceIp,
            'SERVER_NAME' => $serverName,
            'SERVER_PORT' => (string) $port,
            'REQUEST_SCHEME' => $https ? 'https' : 'http',
        ];
        if ($https) {
            $server['HTTPS'] = 'on';
        }
        foreach ($headers as $name => $values) {
            $key = \strtoupper(\str_replace('-', '_', $name));
            if ($key !== 'CONTENT_TYPE' && $key !== 'CONTENT_LENGTH') {
                $key = 'HTTP_' . $key;
            }
            $server[$key] = \implode(', ', $values);
        }
        $auth = $headers['authorization'][0] ?? '';
        if (\strncasecmp($auth, 'Basic ', 6) === 0) {
            $decoded = (string) \base64_decode(\trim(\substr($auth, 6)), true);
            if (\str_contains($decoded, ':')) {
                [$server['PHP_AUTH_USER'], $server['PHP_AUTH_PW']] = \explode(':', $decoded, 2);
            }
        }

        $uri = $requestUri;
        if ($host !== '' && \preg_match('/^[A-Za-z0-9.\-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$/', $host)) {
            $uri = ($https ? 'https' : 'http') . '://' . $host . $requestUri;
        }

        $stream = Stream::create($body);
        $stream->rewind();
        try {
            $request = new ServerRequest($method, $uri, $headers, $stream, $version, $server);
        } catch (\InvalidArgumentException) {
            // An unparsable URI: keep the path only.
            $request = new ServerRequest($method, $path, $headers, $stream, $version, $server);
        }

        \parse_str($query, $queryParams);
        [$parsedBody, $files] = self::parseBody($body, $headers['content-type'][0] ?? '', $tmpFiles);

        $request = $request
            ->withCookieParams(self::parseCookies(\implode('; ', $headers['cookie'] ?? [])))
            ->withQueryParams($queryParams)
            ->withParsedBody($parsedBody)
            ->withUploadedFiles($files);
        foreach (($event['pathParameters'] ?? []) ?: [] as $name => $value) {
            $request = $request->withAttribute((string) $name, $value);
        }
        return $request
            ->withAttribute('lambda-event', $event)
            ->withAttribute('lambda-context', $context);
    }

    public static function fromResponse(ResponseInterface $response, bool $v2): array
    {
        $stream = $response->getBody();
        if ($stream->isSeekable()) {
            $stream->rewind();
        }
        $body = $stream->getContents();
        $base64 = (bool) \getenv('BREF_BINARY_RESPONSES') || \preg_match('//u', $body) !== 1;

        $out = ['statusCode' => $response->getStatusCode()];
        if ($v2) {
            $headers = [];
            $cookies = [];
            foreach ($response->getHeaders() as $name => $values) {
                if (\strcasecmp((string) $name, 'set-cookie') === 0) {
                    \array_push($cookies, ...$values);
                } else {
                    $headers[$name] = \implode(', ', $values);
                }
            }
            $out['headers'] = $headers === [] ? new \stdClass() : $headers;
            $out['cookies'] = $cookies;
        } else {
            $headers = $response->getHeaders();
            $out['multiValueHeaders'] = $headers === [] ? new \stdClass() : $headers;
        }
        $out['body'] = $base64 ? \base64_encode($body) : $body;
        $out['isBase64Encoded'] = $base64;
        return $out;
    }

    /** v1 events carry decoded query parameters: rebuild an encoded query string from them. */
    private static function v1QueryString(array $event): string
    {
        $pairs = [];
        if (!empty($event['multiValueQueryStringParameters'])) {
            foreach ($event['multiValueQueryStringParameters'] as $name => $values) {
                foreach ((array) $values as $value) {
                    $pairs[] = self::encodeKey((string) $name) . '=' . \rawurlencode((string) $value);
                }
            }
        } elseif (!empty($event['queryStringParameters'])) {
            foreach ($event['queryStringParameters'] as $name => $value) {
                $pairs[] = self::encodeKey((string) $name) . '=' . \rawurlencode((string) $value);
            }
        }
        return \implode('&', $pairs);
    }

    /** Encode a query key but keep `[` and `]` readable (`a[]`, `user[name]`). */
    private static function encodeKey(string $key): string
    {
        return \str_replace(['%5B', '%5D'], ['[', ']'], \rawurlencode($key));
    }

    /** @return array<string,string> */
    private static function parseCookies(string $header): array
    {
        $cookies = [];
        foreach (\explode(';', $header) as $part) {
            $eq = \strpos($part, '=');
            if ($eq === false) {
                continue;
            }
            $name = \trim(\substr($part, 0, $eq));
            if ($name !== '' && !isset($cookies[$name])) {
                $cookies[$name] = \urldecode(\trim(\substr($part, $eq + 1)));
            }
        }
        return $cookies;
    }

    /**
     * @param list<string> $tmpFiles
     * @return array{0: array|null, 1: array}
     */
    private static function parseBody(string $body, string $contentType, array &$tmpFiles): array
    {
        if ($body === '' || $contentType === '') {
            return [null, []];
        }
        $mediaType = \strtolower(\trim(\explode(';', $contentType, 2)[0]));
        if ($mediaType === 'application/x-www-form-urlencoded') {
            \parse_str($body, $fields);
            return [$fields, []];
        }
        if ($mediaType === 'multipart/form-data') {
            return self::parseMultipart($body, $contentType, $tmpFiles);
        }
        if ($mediaType === 'application/json' || \str_ends_with($mediaType, '+json')) {
            $data = \json_decode($body, true);
            return [\is_array($data) ? $data : null, []];
        }
        return [null, []];
    }

    /**
     * @param list<string> $tmpFiles
     * @return array{0: array, 1: array}
     */
    private static function parseMultipart(string $body, string $contentType, array &$tmpFiles): array
    {
        if (!\preg_match('/boundary=(?:"([^"]+)"|([^;\s]+))/i', $contentType, $m)) {
            return [null, []];
        }
        $delimiter = "\r\n--" . ($m[1] !== '' ? $m[1] : $m[2]);
        $fields = [];
        $files = [];
        $parts = \explode($delimiter, "\r\n" . $body);
        \array_shift($parts); // preamble
        foreach ($parts as $part) {
            if (\str_starts_with($part, '--')) {
                break; // closing delimiter
            }
            $split = \strpos($part, "\r\n\r\n");
            if ($split === false) {
                continue;
            }
            $rawHeaders = \substr($part, 0, $split);
            $content = \substr($part, $split + 4);
            if (!\preg_match('/^content-disposition:[^\r\n]*?\bname=(?:"([^"]*)"|([^;\s]*))/im', $rawHeaders, $nm)) {
                continue;
            }
            $name = $nm[1] !== '' ? $nm[1] : ($nm[2] ?? '');
            if (\preg_match('/^content-disposition:[^\r\n]*?\bfilename=(?:"([^"]*)"|([^;\s]*))/im', $rawHeaders, $fm)) {
                $filename = $fm[1] !== '' ? $fm[1] : ($fm[2] ?? '');
                $mime = \preg_match('/^content-type:\s*([^\r\n]+)/im', $rawHeaders, $tm) ? \trim($tm[1]) : 'application/octet-stream';
                if ($filename === '' && $content === '') {
                    $file = new UploadedFile(Stream::create(''), 0, \UPLOAD_ERR_NO_FILE, '', $mime);
                } else {
                    $tmp = \tempnam(\sys_get_temp_dir(), 'tusk_upload_');
                    if ($tmp === false || \file_put_contents($tmp, $content) === false) {
                        $file = new UploadedFile(Stream::create(''), 0, \UPLOAD_ERR_CANT_WRITE, $filename, $mime);
                    } else {
                        $tmpFiles[] = $tmp;
                        $file = new UploadedFile($tmp, \strlen($content), \UPLOAD_ERR_OK, $filename, $mime);
                    }
                }
                self::insert($files, $name, $file);
            } else {
                self::insert($fields, $name, $content);
            }
        }
        return [$fields, $files];
    }

    /** `$array['a']['b'][] = $value` for a form key like `a[b][]`, as PHP does for $_POST. */
    private static function insert(array &$array, string $key, mixed $value): void
    {
        $open = \strpos($key, '[');
        if ($open === false || $open === 0 || !\preg_match_all('/\[([^\]]*)\]/', \substr($key, $open), $mm) || \implode('', $mm[0]) !== \substr($key, $open)) {
            $array[$key] = $value;
            return;
        }
        $ref = &$array;
        foreach ([\substr($key, 0, $open), ...$mm[1]] as $i => $segment) {
            if ($i > 0 && !\is_array($ref)) {
                $ref = [];
            }
            if ($segment === '' && $i > 0) {
                $ref[] = null;
                \end($ref);
                $ref = &$ref[\key($ref)];
            } else {
                if (!isset($ref[$segment])) {
                    $ref[$segment] = null;
                }
                $ref = &$ref[$segment];
            }
        }
        $ref = $value;
    }
}
