<?php

// The app's configuration, as such apps have it: a data directory and a few helpers.
define('DATA_DIR', getenv('LEGACY_DATA_DIR') ?: '/mnt/data');

foreach (['uploads', 'sessions', 'notes'] as $dir) {
    if (!is_dir(DATA_DIR . '/' . $dir)) {
        @mkdir(DATA_DIR . '/' . $dir, 0770, true);
    }
}

function h(string $s): string
{
    return htmlspecialchars($s, ENT_QUOTES);
}

function json_out($data, int $status = 200): void
{
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($data);
}
