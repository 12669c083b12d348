<?php

use App\Http\Controllers\AppController;
use Illuminate\Support\Facades\Route;

Route::prefix('laravel')->group(function () {
    Route::get('/hello/{name}', [AppController::class, 'hello']);
    Route::post('/echo', [AppController::class, 'echo']);
    Route::get('/headers', [AppController::class, 'headers']);
    Route::get('/session', [AppController::class, 'session']);
    Route::get('/boot', [AppController::class, 'boot']);
    Route::get('/fail', [AppController::class, 'fail']);
    // Sessionless, like the other examples' /page (the benchmark's request): a public page.
    Route::get('/page', [AppController::class, 'page'])->withoutMiddleware([
        \Illuminate\Session\Middleware\StartSession::class,
        \Illuminate\Cookie\Middleware\AddQueuedCookiesToResponse::class,
        \Illuminate\Cookie\Middleware\EncryptCookies::class,
    ]);
});
