<?php

declare(strict_types=1);

namespace Tusk\Runtime;

/**
 * What every framework bridge does around one HTTP request in worker mode (the process serves
 * many requests): the PHP-level state php-fpm would start fresh for each request.
 *
 * Before the request: $_GET, $_POST, $_COOKIE, $_FILES, $_REQUEST and the request part of
 * $_SERVER are filled from the event, so code that reads superglobals (legacy libraries inside
 * a framework app) sees this request. After it — even when it threw — the upload temp files
 * are removed, a native PHP session still open is written and closed, the session id and
 * $_SESSION are cleared (a request without the session cookie must never see the previous
 * client's session), and the superglobals go back to what they were at boot.
 *
 * What it cannot reset is the application's own memory: static properties, singletons and
 * globals the app mutates. The framework bridges reset what their framework knows about
 * (Symfony's `services_resetter`, Laravel's session/auth/cookie managers and scoped instances);
 * docs/guide-frameworks.md lists the rest.
 */
final class Worker
{
    /** @var array<string, mixed>|null $_SERVER as it was before the first request */
    private static ?array $bootServer = null;

    /**
     * @template T
     * @param \Closure(): T $handle
     * @return T
     */
    /** The HTTP request being served, for the exit() handler in bootstrap.php. */
    public static ?HttpEvent $current = null;

    public static function run(HttpEvent $http, \Closure $handle): mixed
    {
        self::$current = $http;
        $boot = self::$bootServer ??= $_SERVER;
        $_GET = $http->queryParams;
        $_POST = $http->formFields ?? [];
        $_COOKIE = $http->cookies;
        $_FILES = $http->files === [] ? [] : $http->phpFiles();
        // php.ini's request_order ("GP" in Debian's php.ini): POST over GET, no cookies.
        $_REQUEST = $_POST + $_GET;
        $_SERVER = $http->server + $boot;
        self::sessionSetup();
        self::sessionFromCookie($http);
        try {
            $out = $handle();
            return \is_array($out) ? self::addSessionCookie($out, $http) : $out;
        } finally {
            self::$current = null;
            $http->cleanup();
            self::resetSession();
            $_GET = $_POST = $_COOKIE = $_FILES = $_REQUEST = [];
            $_SERVER = $boot;
        }
    }

    private static bool $sessionReady = false;

    /**
     * Native sessions in a long-lived CLI process: the CLI SAPI never sends headers, so PHP's own
     * session cookie is added by addSessionCookie(); and the files go to a writable directory.
     */
    private static function sessionSetup(): void
    {
        if (self::$sessionReady || \session_status() === \PHP_SESSION_DISABLED) {
            return;
        }
        self::$sessionReady = true;
        // php.ini may name a directory the instance cannot write (Debian's FPM default
        // /var/lib/php/sessions; the package is read-only): fall back to the instance's /tmp.
        $path = (string) \ini_get('session.save_path');
        $dir = \str_contains($path, ';') ? \substr($path, \strrpos($path, ';') + 1) : $path;
        if (\ini_get('session.save_handler') === 'files' && ($dir === '' || !\is_dir($dir) || !\is_writable($dir))) {
            \ini_set('session.save_path', \sys_get_temp_dir());
        }
        // Cookies are the only way a session id travels here (no trans-sid URLs in an API event).
        \ini_set('session.use_only_cookies', '1');
    }

    /**
     * PHP's session_start() reads the id from the cookies PHP itself parsed at process start, not
     * from $_COOKIE: hand it this request's session cookie (or none).
     */
    private static function sessionFromCookie(HttpEvent $http): void
    {
        if (\session_status() !== \PHP_SESSION_NONE) {
            return;
        }
        $id = $http->cookies[\session_name()] ?? '';
        // Only what PHP itself would accept as an id (session.sid_bits_per_character 4..6).
        @\session_id(\is_string($id) && \preg_match('/^[a-zA-Z0-9,-]{1,256}$/', $id) ? $id : '');
    }

    /**
     * The Set-Cookie PHP would have sent for a native session started during this request (a
     * new session, or session_regenerate_id()), added to the API Gateway response.
     */
    private static function addSessionCookie(array $out, HttpEvent $http): array
    {
        if (\session_status() === \PHP_SESSION_DISABLED) {
            return $out;
        }
        $id = \session_id();
        $name = \session_name();
        if ($id === '' || $id === false || ($http->cookies[$name] ?? null) === $id) {
            return $out;
        }
        // The framework may have set it itself (Symfony's session listener does, in a CLI worker).
        $existing = $http->v2 ? ($out['cookies'] ?? []) : ((array) ($out['multiValueHeaders'] ?? []))['Set-Cookie'] ?? [];
        foreach ((array) $existing as $set) {
            if (\strncmp((string) $set, $name . '=', \strlen($name) + 1) === 0) {
                return $out;
            }
        }
        $p = \session_get_cookie_params();
        $cookie = $name . '=' . \rawurlencode($id);
        if ($p['lifetime'] > 0) {
            $cookie .= '; Expires=' . \gmdate('D, d M Y H:i:s \G\M\T', \time() + $p['lifetime']) . '; Max-Age=' . $p['lifetime'];
        }
        $cookie .= '; Path=' . ($p['path'] ?: '/');
        if ($p['domain'] !== '') {
            $cookie .= '; Domain=' . $p['domain'];
        }
        if ($p['secure']) {
            $cookie .= '; Secure';
        }
        if ($p['httponly']) {
            $cookie .= '; HttpOnly';
        }
        if (($p['samesite'] ?? '') !== '') {
            $cookie .= '; SameSite=' . $p['samesite'];
        }
        if ($http->v2) {
            $out['cookies'] = [...($out['cookies'] ?? []), $cookie];
        } else {
            $headers = (array) ($out['multiValueHeaders'] ?? []);
            $headers['Set-Cookie'] = [...($headers['Set-Cookie'] ?? []), $cookie];
            $out['multiValueHeaders'] = $headers;
        }
        return $out;
    }

    /**
     * Ends the native PHP session the way the end of an FPM request does (write and close), then
     * forgets its id and data so the next request starts without one.
     */
    public static function resetSession(): void
    {
        $status = \session_status();
        if ($status === \PHP_SESSION_DISABLED) {
            return;
        }
        if ($status === \PHP_SESSION_ACTIVE) {
            @\session_write_close();
        }
        $_SESSION = [];
        // Possible because the runtime keeps headers_sent() false (bootstrap.php's output
        // buffer): PHP refuses to change the session id once output went out.
        if (\session_id() !== '') {
            @\session_id('');
        }
    }

    /**
     * The response php-fpm gives a script that calls exit() mid-request: what it printed so far,
     * with the status it set (200 by default). Called from the shutdown function; the instance
     * then ends and the node replaces it.
     */
    public static function exitResponse(HttpEvent $http): array
    {
        $output = '';
        while (\ob_get_level() > 0) {
            $output = \ob_get_clean() . $output;
        }
        $status = \http_response_code();
        return HttpEvent::response($http->v2, \is_int($status) && $status >= 100 ? $status : 200, ['Content-Type' => 'text/html; charset=UTF-8'], [], $output);
    }

    /**
     * Runs $fn with output buffering; returns its result and whatever it printed. Frameworks
     * apps that `echo` before returning their response get that output in front of the body,
     * as under php-fpm (where it would also have been sent first) — but their status, headers
     * and cookies still go out, which php-fpm cannot do once output started.
     *
     * @template T
     * @param \Closure(): T $fn
     * @return array{0: T, 1: string}
     */
    public static function capture(\Closure $fn): array
    {
        \ob_start();
        $level = \ob_get_level();
        try {
            $result = $fn();
        } finally {
            // The app may have left buffers of its own open (or closed ours): collect them all.
            $output = '';
            while (\ob_get_level() >= $level) {
                $output = \ob_get_clean() . $output;
            }
        }
        return [$result, $output];
    }
}
