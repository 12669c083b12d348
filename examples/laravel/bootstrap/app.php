<?php

// Laravel's bootstrap/app.php. In worker mode (`handler: bootstrap/app.php`, runtime php-82)
// Tusk takes this Application, bootstraps the HTTP kernel once per instance and serves every
// request with it; public/index.php and artisan use it the classic way.
require_once dirname(__DIR__) . '/autoload.php';

$app = new Illuminate\Foundation\Application($_ENV['APP_BASE_PATH'] ?? dirname(__DIR__));

// On Tusk (as on Lambda) the package is read-only: keep storage/ and the bootstrap caches in
// /tmp when the deployed ones cannot be written. (Worker mode does this by itself; artisan on
// php-82-console needs it here.)
if (!is_writable($app->storagePath())) {
    $tmp = sys_get_temp_dir() . '/storage';
    foreach (['framework/sessions', 'framework/views', 'framework/cache/data', 'logs', 'bootstrap/cache'] as $dir) {
        is_dir("$tmp/$dir") || mkdir("$tmp/$dir", 0777, true);
    }
    $app->useStoragePath($tmp);
    foreach (['SERVICES' => 'services', 'PACKAGES' => 'packages', 'CONFIG' => 'config', 'ROUTES' => 'routes-v7', 'EVENTS' => 'events'] as $key => $file) {
        $_ENV["APP_{$key}_CACHE"] ??= "$tmp/bootstrap/cache/$file.php";
    }
}

$app->singleton(Illuminate\Contracts\Http\Kernel::class, App\Http\Kernel::class);
$app->singleton(Illuminate\Contracts\Console\Kernel::class, App\Console\Kernel::class);
$app->singleton(Illuminate\Contracts\Debug\ExceptionHandler::class, App\Exceptions\Handler::class);

return $app;
