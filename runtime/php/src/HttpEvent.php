<?php

declare(strict_types=1);

namespace Tusk\Runtime;

/**
 * An API Gateway HTTP event (payload v1 from `http`, v2 from `httpApi`), parsed once into the
 * parts every HTTP bridge needs: method, URI, headers, cookies, raw and parsed body, uploaded
 * files, CGI-style server variables. The bridges (PSR-7, Symfony HttpFoundation, Laravel, Slim)
 * only map these parts onto their own request classes, so they all see the same request.
 *
 * Uploaded files are written to temp files that `cleanup()` removes after the invocation, as
 * PHP does with its own upload temp files at the end of a request.
 */
final class HttpEvent
{
    public readonly bool $v2;
    public readonly string $method;
    /** The path as the client sent it (percent-encoded), always starting with `/`. */
    public readonly string $path;
    /** The raw (encoded) query string, without `?`. */
    public readonly string $query;
    /** Path + query, like REQUEST_URI. */
    public readonly string $requestUri;
    /** `scheme://host/path?query` when the Host header is usable, else the request URI. */
    public readonly string $uri;
    /** e.g. `1.1` */
    public readonly string $protocolVersion;
    public readonly bool $https;
    /** @var array<string, list<string>> lower-cased header name => values */
    public readonly array $headers;
    /** @var array<string, string> */
    public readonly array $cookies;
    /** The request body, base64-decoded when the event says so. */
    public readonly string $body;
    /** @var array<string, string> CGI variables (REQUEST_METHOD, REMOTE_ADDR, HTTP_*, …) */
    public readonly array $server;
    /** @var array<string, mixed> the query string parsed the way PHP fills $_GET */
    public readonly array $queryParams;
    /** @var array<string, mixed>|null form fields (urlencoded or multipart), like $_POST; null for other bodies */
    public readonly ?array $formFields;
    /** @var array<string, mixed> field name => EventFile, or nested arrays of them for `a[]` / `a[b]` names */
    public readonly array $files;
    /** @var array<string, string> `{param}` values of the route */
    public readonly array $pathParameters;

    /** @var list<string> temp files behind $files */
    private array $tmpFiles = [];

    private function __construct(public readonly array $event)
    {
        $v2 = $this->v2 = (string) ($event['version'] ?? '1.0') === '2.0';
        $this->method = \strtoupper((string) ($v2 ? $event['requestContext']['http']['method'] : $event['httpMethod']));

        $headers = [];
        if (!$v2 && !empty($event['multiValueHeaders'])) {
            foreach ($event['multiValueHeaders'] as $name => $values) {
                $headers[\strtolower((string) $name)] = \array_values(\array_map('strval', (array) $values));
            }
        } else {
            foreach (($event['headers'] ?? []) ?: [] as $name => $value) {
                $headers[\strtolower((string) $name)] = [(string) $value];
            }
        }
        // Payload 2.0 moves the Cookie header into `cookies`: put it back for the application.
        if ($v2 && !empty($event['cookies'])) {
            $headers['cookie'] = [\implode('; ', (array) $event['cookies'])];
        }

        $body = (string) ($event['body'] ?? '');
        if ($body !== '' && !empty($event['isBase64Encoded'])) {
            $body = (string) \base64_decode($body, false);
        }
        if ($body !== '' && !isset($headers['content-length'])) {
            $headers['content-length'] = [(string) \strlen($body)];
        }
        $this->headers = $headers;
        $this->body = $body;

        $path = (string) ($v2 ? ($event['rawPath'] ?? '/') : ($event['path'] ?? '/'));
        if ($path === '' || $path[0] !== '/') {
            $path = '/' . $path;
        }
        $this->path = $path;
        $this->query = $query = $v2 ? (string) ($event['rawQueryString'] ?? '') : self::v1QueryString($event);
        $this->requestUri = $requestUri = $path . ($query !== '' ? '?' . $query : '');

        $protocol = (string) ($v2 ? ($event['requestContext']['http']['protocol'] ?? 'HTTP/1.1') : ($event['requestContext']['protocol'] ?? 'HTTP/1.1'));
        $this->protocolVersion = $version = \str_starts_with($protocol, 'HTTP/') ? \substr($protocol, 5) : '1.1';
        $this->https = $https = \strtolower($headers['x-forwarded-proto'][0] ?? '') === 'https';
        $host = $headers['host'][0] ?? '';
        $serverName = $host !== '' ? (string) \preg_replace('/:\d+$/', '', $host) : 'localhost';
        $port = $headers['x-forwarded-port'][0] ?? (\preg_match('/:(\d+)$/', $host, $m) ? $m[1] : ($https ? '443' : '80'));
        $sourceIp = (string) ($v2 ? ($event['requestContext']['http']['sourceIp'] ?? '127.0.0.1') : ($event['requestContext']['identity']['sourceIp'] ?? '127.0.0.1'));

        $server = [
            'SERVER_PROTOCOL' => 'HTTP/' . $version,
            'REQUEST_METHOD' => $this->method,
            'REQUEST_TIME' => \time(),
            'REQUEST_TIME_FLOAT' => \microtime(true),
            'QUERY_STRING' => $query,
            'DOCUMENT_ROOT' => (string) \getcwd(),
            'REQUEST_URI' => $requestUri,
            'SCRIPT_NAME' => '',
            'PHP_SELF' => '',
            'PATH_INFO' => $path,
            'GATEWAY_INTERFACE' => 'CGI/1.1',
            'SERVER_SOFTWARE' => 'Tusk',
            'REMOTE_ADDR' => $sourceIp,
            'REMOTE_PORT' => '0',
            'SERVER_ADDR' => '127.0.0.1',
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
                // httpoxy: a client-sent `Proxy:` header must not become HTTP_PROXY.
                if ($key === 'PROXY') {
                    continue;
                }
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
        $this->server = $server;

        $this->uri = $host !== '' && \preg_match('/^[A-Za-z0-9.\-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$/', $host)
            ? ($https ? 'https' : 'http') . '://' . $host . $requestUri
            : $requestUri;

        $this->cookies = self::parseCookies(\implode('; ', $headers['cookie'] ?? []));
        \parse_str($query, $queryParams);
        $this->queryParams = $queryParams;
        [$this->formFields, $this->files] = $this->parseForm($headers['content-type'][0] ?? '');
        $this->pathParameters = \array_map('strval', (array) (($event['pathParameters'] ?? []) ?: []));
    }

    /**
     * @param string $for what the handler is, for the error message (e.g. "a PSR-15 RequestHandlerInterface")
     * @throws \InvalidArgumentException when the event is not an API Gateway HTTP event
     */
    public static function fromEvent(mixed $event, string $for): self
    {
        if (!\is_array($event) || !(isset($event['httpMethod']) || isset($event['requestContext']['http']['method']))) {
            throw new \InvalidArgumentException(
                "This handler is $for, so it only accepts HTTP events "
                . '(`httpApi` or `http` events in serverless.yml); it was invoked with ' . \get_debug_type($event)
                . (\is_array($event) ? ' without httpMethod or requestContext.http.method' : '')
            );
        }
        return new self($event);
    }

    /** The body as JSON (arrays), or null when it is not a JSON object/array. */
    public function json(): ?array
    {
        $type = \strtolower(\trim(\explode(';', $this->headers['content-type'][0] ?? '', 2)[0]));
        if ($this->body === '' || !($type === 'application/json' || \str_ends_with($type, '+json'))) {
            return null;
        }
        $data = \json_decode($this->body, true);
        return \is_array($data) ? $data : null;
    }

    /** Removes the upload temp files (a file the application moved away is left alone). */
    public function cleanup(): void
    {
        foreach ($this->tmpFiles as $file) {
            if (\is_file($file)) {
                @\unlink($file);
            }
        }
        $this->tmpFiles = [];
    }

    /**
     * $_FILES in PHP's own layout: `name[a][b]` files become `$_FILES['name']['tmp_name']['a']['b']`.
     *
     * @return array<string, array>
     */
    public function phpFiles(): array
    {
        $out = [];
        foreach ($this->files as $field => $value) {
            foreach (['name', 'type', 'tmp_name', 'error', 'size'] as $key) {
                $out[$field][$key] = self::project($value, $key);
            }
        }
        return $out;
    }

    private static function project(mixed $value, string $key): mixed
    {
        if ($value instanceof EventFile) {
            return match ($key) {
                'name' => $value->clientName,
                'type' => $value->type,
                'tmp_name' => $value->path,
                'error' => $value->error,
                'size' => $value->size,
            };
        }
        $out = [];
        foreach ((array) $value as $k => $v) {
            $out[$k] = self::project($v, $key);
        }
        return $out;
    }

    /**
     * The API Gateway response for status, headers, cookies and body — v2: headers joined with
     * ", " and Set-Cookie in `cookies`; v1: everything in `multiValueHeaders`. Bodies that are
     * not valid UTF-8 (or all, with BREF_BINARY_RESPONSES=1) are base64-encoded.
     *
     * @param array<string, list<string>|string> $headers
     * @param list<string> $cookies Set-Cookie values
     */
    public static function response(bool $v2, int $status, array $headers, array $cookies, string $body): array
    {
        $base64 = (bool) \getenv('BREF_BINARY_RESPONSES') || \preg_match('//u', $body) !== 1;
        $out = ['statusCode' => $status];
        if ($v2) {
            $flat = [];
            foreach ($headers as $name => $values) {
                if (\strcasecmp((string) $name, 'set-cookie') === 0) {
                    \array_push($cookies, ...(array) $values);
                } else {
                    $flat[$name] = \is_array($values) ? \implode(', ', $values) : (string) $values;
                }
            }
            $out['headers'] = $flat === [] ? new \stdClass() : $flat;
            $out['cookies'] = \array_values($cookies);
        } else {
            $multi = [];
            foreach ($headers as $name => $values) {
                $multi[$name] = \array_values(\array_map('strval', (array) $values));
            }
            if ($cookies !== []) {
                $multi['Set-Cookie'] = [...($multi['Set-Cookie'] ?? []), ...$cookies];
            }
            $out['multiValueHeaders'] = $multi === [] ? new \stdClass() : $multi;
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
            // The first occurrence wins, as in PHP's $_COOKIE.
            if ($name !== '' && !isset($cookies[$name])) {
                $cookies[$name] = \urldecode(\trim(\substr($part, $eq + 1)));
            }
        }
        return $cookies;
    }

    /** @return array{0: array|null, 1: array} form fields (null when the body is no form) and files */
    private function parseForm(string $contentType): array
    {
        if ($this->body === '' || $contentType === '') {
            return [null, []];
        }
        $mediaType = \strtolower(\trim(\explode(';', $contentType, 2)[0]));
        if ($mediaType === 'application/x-www-form-urlencoded') {
            \parse_str($this->body, $fields);
            return [$fields, []];
        }
        if ($mediaType === 'multipart/form-data') {
            return $this->parseMultipart($contentType);
        }
        return [null, []];
    }

    /** @return array{0: array, 1: array} */
    private function parseMultipart(string $contentType): array
    {
        if (!\preg_match('/boundary=(?:"([^"]+)"|([^;\s]+))/i', $contentType, $m)) {
            return [null, []];
        }
        $delimiter = "\r\n--" . ($m[1] !== '' ? $m[1] : $m[2]);
        $fields = [];
        $files = [];
        $parts = \explode($delimiter, "\r\n" . $this->body);
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
                    $file = new EventFile('', '', '', 0, \UPLOAD_ERR_NO_FILE);
                } else {
                    $tmp = \tempnam(\sys_get_temp_dir(), 'tusk_upload_');
                    if ($tmp === false || \file_put_contents($tmp, $content) === false) {
                        $file = new EventFile('', $filename, $mime, 0, \UPLOAD_ERR_CANT_WRITE);
                    } else {
                        $this->tmpFiles[] = $tmp;
                        $file = new EventFile($tmp, $filename, $mime, \strlen($content), \UPLOAD_ERR_OK);
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

/** One uploaded file of a multipart body, before a bridge wraps it in its framework's class. */
final class EventFile
{
    public function __construct(
        public readonly string $path,
        public readonly string $clientName,
        public readonly string $type,
        public readonly int $size,
        public readonly int $error,
    ) {
    }
}
