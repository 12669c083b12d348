<?php

return [
    // `file` keeps sessions in storage/framework/sessions (the instance's /tmp on Tusk unless
    // SESSION_FILES points at a volume); `database`, `redis` or `cookie` share them across
    // instances: see docs/guide-frameworks.md.
    'driver' => env('SESSION_DRIVER', 'file'),
    'lifetime' => 120,
    'expire_on_close' => false,
    'encrypt' => false,
    'files' => env('SESSION_FILES', storage_path('framework/sessions')),
    'connection' => null,
    'table' => 'sessions',
    'store' => null,
    'lottery' => [2, 100],
    'cookie' => 'laravel_session',
    'path' => '/',
    'domain' => null,
    'secure' => null,
    'http_only' => true,
    'same_site' => 'lax',
];
