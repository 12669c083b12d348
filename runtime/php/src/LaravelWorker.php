<?php

declare(strict_types=1);

namespace Tusk\Runtime;

use Illuminate\Foundation\Application;
use Illuminate\Http\Request;
use Illuminate\Http\UploadedFile;
use Illuminate\Support\Facades\Facade;

/**
 * Worker mode for Laravel: the handler is `bootstrap/app.php`, which returns the
 * Illuminate\Foundation\Application. The HTTP kernel is bootstrapped once (environment,
 * configuration, providers) when the instance starts; each HTTP event then becomes an
 * Illuminate\Http\Request → Kernel::handle() → Kernel::terminate() → API Gateway response.
 *
 * Between requests Tusk resets what Laravel keeps per request in long-lived objects:
 * - the session store (a fresh Store per request: Laravel's Store merges what it loads into
 *   the attributes it already holds, so a reused one would hand a client without a session
 *   cookie the previous client's data),
 * - auth guards (the logged-in user), queued cookies, scoped instances, facade caches,
 * - configuration changed during a request (restored to the booted configuration),
 * - the application locale, and terminating callbacks registered during a request.
 * Worker::run resets superglobals and the native PHP session.
 *
 * Read-only task root: when `storage/` or `bootstrap/cache` cannot be written (always, in a
 * sandbox: only /tmp is writable), storage moves to /tmp/storage (with the directories Laravel
 * expects) and the package/service/config caches to /tmp/storage/bootstrap/cache, unless the
 * app set APP_*_CACHE itself.
 */
final class LaravelWorker
{
    private readonly object $kernel;
    private readonly int $bootCallbacks;
    private readonly array $bootConfig;
    private readonly string $bootLocale;

    public function __construct(private readonly Application $app)
    {
        // Laravel decides "console or HTTP" from PHP_SAPI, which is `cli` here: say HTTP, so
        // exceptions render as HTTP responses and providers register their web parts.
        self::setEnv('APP_RUNNING_IN_CONSOLE', 'false');
        (fn () => $this->isRunningInConsole = null)->call($app);
        self::writablePaths($app);

        $this->kernel = $app->make(\Illuminate\Contracts\Http\Kernel::class);
        // The expensive part (config, providers, routes) happens here, once per instance.
        $this->kernel->bootstrap();
        $this->bootCallbacks = \count((fn () => $this->terminatingCallbacks)->call($app));
        $this->bootConfig = $app['config']->all();
        $this->bootLocale = $app->getLocale();
    }

    public function handle(mixed $event, object $context): array
    {
        $http = HttpEvent::fromEvent($event, 'a Laravel application');
        return Worker::run($http, function () use ($http, $context): array {
            $this->resetBefore();
            $request = Request::createFromBase(HttpFoundationBridge::request($http, $context, Request::class, UploadedFile::class));
            [$response, $before] = Worker::capture(function () use ($request) {
                $response = $this->kernel->handle($request);
                $this->kernel->terminate($request, $response);
                return $response;
            });
            try {
                return HttpFoundationBridge::response($response, $request, $http->v2, $before);
            } finally {
                $this->resetAfter();
            }
        });
    }

    private function resetBefore(): void
    {
        $app = $this->app;
        if ($app->resolved('session')) {
            $app['session']->forgetDrivers();
        }
        $app->forgetInstance('session.store');
        if ($app->resolved('auth')) {
            $app['auth']->forgetGuards();
        }
        $app->forgetInstance('auth.driver');
        if ($app->resolved('cookie')) {
            $app['cookie']->flushQueuedCookies();
        }
        if (\method_exists($app, 'forgetScopedInstances')) {
            $app->forgetScopedInstances();
        }
        // Arrays are copy-on-write: an untouched configuration is the very same array, and
        // this comparison costs nothing.
        $config = $app['config'];
        if ($config->all() !== $this->bootConfig) {
            $items = $this->bootConfig;
            (fn () => $this->items = $items)->call($config);
        }
        if ($app->getLocale() !== $this->bootLocale) {
            $app->setLocale($this->bootLocale);
        }
        Facade::clearResolvedInstances();
    }

    private function resetAfter(): void
    {
        // Callbacks registered while handling the request ran in terminate(); keeping them
        // would run them again after every later request (and grow the list forever).
        $keep = $this->bootCallbacks;
        (function () use ($keep): void {
            \array_splice($this->terminatingCallbacks, $keep);
        })->call($this->app);
        $this->app->forgetInstance('request');
    }

    private static function writablePaths(Application $app): void
    {
        $storage = $app->storagePath();
        if (!self::writable($storage)) {
            $storage = \sys_get_temp_dir() . '/storage';
            $app->useStoragePath($storage);
        }
        foreach (['framework/sessions', 'framework/views', 'framework/cache/data', 'logs', 'app'] as $dir) {
            if (!\is_dir("$storage/$dir")) {
                @\mkdir("$storage/$dir", 0777, true);
            }
        }
        if (!self::writable($app->bootstrapPath('cache'))) {
            $cache = "$storage/bootstrap/cache";
            @\mkdir($cache, 0777, true);
            foreach (['APP_SERVICES_CACHE' => 'services.php', 'APP_PACKAGES_CACHE' => 'packages.php', 'APP_CONFIG_CACHE' => 'config.php', 'APP_ROUTES_CACHE' => 'routes-v7.php', 'APP_EVENTS_CACHE' => 'events.php'] as $key => $file) {
                if ((\getenv($key) ?: ($_SERVER[$key] ?? '')) === '') {
                    self::setEnv($key, "$cache/$file");
                }
            }
        }
    }

    private static function writable(string $dir): bool
    {
        return \is_dir($dir) ? \is_writable($dir) : (\is_dir(\dirname($dir)) && \is_writable(\dirname($dir)));
    }

    /** Laravel's Env reads $_SERVER, $_ENV and getenv(): set all three. */
    private static function setEnv(string $key, string $value): void
    {
        $_SERVER[$key] = $_ENV[$key] = $value;
        \putenv("$key=$value");
    }
}
