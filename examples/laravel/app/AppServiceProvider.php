<?php

namespace App;

use App\Http\Controllers\AppController;
use Illuminate\Support\Facades\Route;
use Illuminate\Support\ServiceProvider;

class AppServiceProvider extends ServiceProvider
{
    public function boot(): void
    {
        AppController::$bootedAt ??= microtime(true);
        Route::middleware('web')->group($this->app->basePath('routes/web.php'));
    }
}
