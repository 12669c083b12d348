<?php

declare(strict_types=1);

/*
 * A plain PHP web app (no framework) for the php-82-fpm runtime: every request that is not a
 * static file under public/ reaches this front controller, exactly as behind nginx + php-fpm.
 */

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';
$method = $_SERVER['REQUEST_METHOD'] ?? 'GET';

// Local development with `php -S ... public/index.php`: let the built-in server serve static
// files (on Tusk they never reach PHP).
if (PHP_SAPI === 'cli-server' && $path !== '/' && is_file(__DIR__ . $path)) {
    return false;
}

function e(mixed $value): string
{
    return htmlspecialchars((string) $value, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
}

function page(string $title, string $body): void
{
    $php = PHP_VERSION;
    header('Content-Type: text/html; charset=utf-8');
    echo <<<HTML
        <!doctype html>
        <html lang="en">
        <head>
          <meta charset="utf-8">
          <title>{$title} · Tusk web app</title>
          <link rel="stylesheet" href="/style.css">
        </head>
        <body>
          <header><a href="/"><img src="/logo.svg" alt="" width="40" height="40"></a> <h1>{$title}</h1></header>
          <main>{$body}</main>
          <footer>Served by PHP {$php} through Tusk (php-82-fpm)</footer>
        </body>
        </html>
        HTML;
}

switch ($path) {
    case '/':
        $greeting = e(getenv('APP_GREETING') ?: 'hi');
        page('Home', <<<HTML
            <p class="greeting">{$greeting} from a PHP app on Tusk!</p>
            <ul>
              <li><a href="/form">A form</a> (POST, fields echoed back)</li>
              <li><a href="/upload">A file upload</a> (name, size and SHA-1)</li>
              <li><a href="/cookies">A cookie counter</a> (several Set-Cookie headers)</li>
              <li><a href="/go">A redirect</a> (<code>/go</code> → <code>/</code>)</li>
              <li><a href="/api/time">A JSON endpoint</a></li>
              <li><a href="/request?x=1&amp;y[]=2">What the app sees of the request</a></li>
              <li><a href="/nope">A 404 page</a></li>
            </ul>
            HTML);
        break;

    case '/form':
        $rows = '';
        if ($method === 'POST') {
            foreach ($_POST as $name => $value) {
                $rows .= '<tr><th>' . e($name) . '</th><td>' . e(is_array($value) ? implode(', ', $value) : $value) . '</td></tr>';
            }
            $rows = '<h2>You sent</h2><table>' . ($rows ?: '<tr><td>nothing</td></tr>') . '</table>';
        }
        page('Form', <<<HTML
            <form method="post" action="/form">
              <label>Name <input name="name" value="Ada"></label>
              <label>Message <textarea name="message">Hello, Tusk!</textarea></label>
              <label><input type="checkbox" name="colors[]" value="red" checked> red</label>
              <label><input type="checkbox" name="colors[]" value="blue" checked> blue</label>
              <button>Send</button>
            </form>
            {$rows}
            HTML);
        break;

    case '/upload':
        $result = '';
        if ($method === 'POST') {
            $file = $_FILES['file'] ?? null;
            if ($file === null || $file['error'] !== UPLOAD_ERR_OK) {
                http_response_code(400);
                $result = '<p class="error">Upload failed (error ' . e($file['error'] ?? 'no file') . ')</p>';
            } else {
                $result = '<table>'
                    . '<tr><th>name</th><td class="name">' . e($file['name']) . '</td></tr>'
                    . '<tr><th>type</th><td>' . e($file['type']) . '</td></tr>'
                    . '<tr><th>size</th><td class="size">' . e($file['size']) . '</td></tr>'
                    . '<tr><th>sha1</th><td class="sha1">' . e(sha1_file($file['tmp_name'])) . '</td></tr>'
                    . '</table>';
            }
        }
        page('Upload', <<<HTML
            <form method="post" action="/upload" enctype="multipart/form-data">
              <input type="file" name="file">
              <button>Upload</button>
            </form>
            {$result}
            HTML);
        break;

    case '/cookies':
        $visits = (int) ($_COOKIE['visits'] ?? 0) + 1;
        setcookie('visits', (string) $visits, ['path' => '/', 'httponly' => true, 'samesite' => 'Lax']);
        setcookie('last_visit', gmdate('Y-m-d\TH:i:s\Z'), ['path' => '/', 'samesite' => 'Lax']);
        page('Cookies', '<p>You have visited this page <strong class="visits">' . $visits . '</strong> time(s).</p>'
            . '<p>Cookies received: <code>' . e(json_encode($_COOKIE)) . '</code></p>');
        break;

    case '/go':
        header('Location: /', true, 302);
        break;

    case '/api/time':
        header('Content-Type: application/json');
        header('Cache-Control: no-store');
        echo json_encode([
            'time' => gmdate(DATE_ATOM),
            'timestamp' => time(),
            'timezone' => date_default_timezone_get(),
            'greeting' => getenv('APP_GREETING') ?: null,
        ], JSON_UNESCAPED_SLASHES);
        break;

    case '/request':
        header('Content-Type: application/json');
        $server = array_intersect_key($_SERVER, array_flip([
            'REQUEST_METHOD', 'REQUEST_URI', 'QUERY_STRING', 'SCRIPT_NAME', 'SCRIPT_FILENAME', 'DOCUMENT_ROOT',
            'PATH_INFO', 'SERVER_PROTOCOL', 'SERVER_NAME', 'SERVER_PORT', 'REMOTE_ADDR', 'HTTPS', 'CONTENT_TYPE', 'CONTENT_LENGTH',
        ]));
        $headers = array_filter($_SERVER, fn ($k) => str_starts_with((string) $k, 'HTTP_'), ARRAY_FILTER_USE_KEY);
        echo json_encode(['server' => $server, 'headers' => $headers, 'get' => $_GET, 'post' => $_POST,
            'cookies' => $_COOKIE, 'body' => file_get_contents('php://input')], JSON_UNESCAPED_SLASHES | JSON_PRETTY_PRINT);
        break;

    default:
        http_response_code(404);
        page('Not found', '<p>There is nothing at <code>' . e($path) . '</code>. <a href="/">Go home</a>.</p>');
}
