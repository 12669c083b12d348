<?php

// Laravel's bootstrap/app.php. In worker mode (`handler: bootstrap/app.php`, runtime php-82)
// Tusk takes this Application, bootstraps the HTTP kernel once per instance and serves every
// request with it; public/index.php and artisan use it the classic way.
require_once dirname(__DIR__) . '/autoload.php';

$app = new Illuminate\Foundation\Application($_ENV['APP_BASE_PATH'] ?? dirname(__DIR__));

$app->singleton(Illuminate\Contracts\Http\Kernel::class, App\Http\Kernel::class);
$app->singleton(Illuminate\Contracts\Console\Kernel::class, App\Console\Kernel::class);
$app->singleton(Illuminate\Contracts\Debug\ExceptionHandler::class, App\Exceptions\Handler::class);

return $app;
