<?php

// A front controller written for php-fpm: routes on $_SERVER['REQUEST_URI'].
require __DIR__ . '/../lib/bootstrap.php';

session_start();
$_SESSION['visits'] = ($_SESSION['visits'] ?? 0) + 1;

$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$path = '/' . ltrim(substr($path, strlen('/legacy')), '/');

switch (true) {
    case $path === '/':
        header('X-Legacy: yes');
        echo '<!doctype html><title>Legacy</title><h1>Hello from ' . h($_SERVER['SERVER_SOFTWARE'] ?? 'php') . '</h1>';
        echo '<p>Visits this session: ' . (int) $_SESSION['visits'] . '</p>';
        echo '<p>Files: ' . count(glob(DATA_DIR . '/uploads/*')) . '</p>';
        break;

    case $path === '/session':
        json_out(['visits' => $_SESSION['visits'], 'id' => session_id()]);
        break;

    case $path === '/server':
        json_out([
            'method' => $_SERVER['REQUEST_METHOD'],
            'uri' => $_SERVER['REQUEST_URI'],
            'script' => $_SERVER['SCRIPT_FILENAME'],
            'host' => $_SERVER['HTTP_HOST'] ?? null,
            'https' => $_SERVER['HTTPS'] ?? null,
            'query' => $_GET,
            'pid' => getmypid(),
        ]);
        break;

    case $path === '/upload' && $_SERVER['REQUEST_METHOD'] === 'POST':
        $f = $_FILES['file'] ?? null;
        if (!$f || $f['error'] !== UPLOAD_ERR_OK) {
            json_out(['error' => $f['error'] ?? 'no file'], 400);
            break;
        }
        $name = basename($f['name']);
        if (!move_uploaded_file($f['tmp_name'], DATA_DIR . '/uploads/' . $name)) {
            json_out(['error' => 'cannot store'], 500);
            break;
        }
        header('Location: /legacy/files/' . rawurlencode($name), true, 303);
        break;

    case str_starts_with($path, '/files/'):
        $file = DATA_DIR . '/uploads/' . basename(rawurldecode(substr($path, 7)));
        if (!is_file($file)) {
            http_response_code(404);
            echo 'no such file';
            break;
        }
        header('Content-Type: application/octet-stream');
        header('Content-Length: ' . filesize($file));
        readfile($file);
        break;

    case $path === '/files':
        json_out(array_map('basename', glob(DATA_DIR . '/uploads/*')));
        break;

    case $path === '/note' && $_SERVER['REQUEST_METHOD'] === 'POST':
        file_put_contents(DATA_DIR . '/notes/notes.txt', ($_POST['text'] ?? '') . "\n", FILE_APPEND | LOCK_EX);
        header('Location: /legacy/notes', true, 302);
        break;

    case $path === '/notes':
        header('Content-Type: text/plain');
        readfile(DATA_DIR . '/notes/notes.txt');
        break;

    case $path === '/tmp':
        // /tmp is per instance: fine for scratch files, gone with the instance.
        file_put_contents('/tmp/scratch.txt', 'scratch');
        echo file_get_contents('/tmp/scratch.txt');
        break;

    default:
        http_response_code(404);
        echo 'Not found: ' . h($path);
}
