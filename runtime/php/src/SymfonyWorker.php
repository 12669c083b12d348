<?php

declare(strict_types=1);

namespace Tusk\Runtime;

use Symfony\Component\HttpKernel\HttpKernelInterface;
use Symfony\Component\HttpKernel\Kernel;
use Symfony\Component\HttpKernel\KernelInterface;
use Symfony\Component\HttpKernel\TerminableInterface;
use Symfony\Contracts\Service\ResetInterface;

/**
 * Worker mode for a Symfony HttpKernelInterface (usually the app's Kernel): booted once when
 * the instance starts, then for each HTTP event: HttpFoundation Request → handle() →
 * terminate() → API Gateway response.
 *
 * State between requests: a Symfony\Component\HttpKernel\Kernel resets its own services at the
 * start of the next request (`services_resetter`: every service tagged `kernel.reset`, which
 * includes the session listener, loggers' buffers, the request stack, Doctrine's entity
 * managers…). Other kernels are reset after each request when they implement ResetInterface.
 * Worker::run resets the PHP-level state (superglobals, native session).
 *
 * terminate() runs before the response is returned: the instance is frozen as soon as it
 * answers, so work left for after the response would wait for the next request (or be lost
 * when the idle instance is stopped).
 */
final class SymfonyWorker
{
    public function __construct(private readonly HttpKernelInterface $kernel)
    {
        // Boot now, during the instance's init phase, so the first request does not pay for
        // the container (compiled into the cache dir on the first boot of an instance).
        if ($kernel instanceof KernelInterface) {
            $kernel->boot();
        }
    }

    public function handle(mixed $event, object $context): array
    {
        $http = HttpEvent::fromEvent($event, 'a Symfony HttpKernel');
        return Worker::run($http, function () use ($http, $context): array {
            $request = HttpFoundationBridge::request($http, $context);
            [$response, $before] = Worker::capture(function () use ($request) {
                $response = $this->kernel->handle($request, 1 /* MAIN_REQUEST (MASTER_REQUEST before Symfony 5.3) */, true);
                if ($this->kernel instanceof TerminableInterface) {
                    $this->kernel->terminate($request, $response);
                }
                return $response;
            });
            try {
                return HttpFoundationBridge::response($response, $request, $http->v2, $before);
            } finally {
                if (!$this->kernel instanceof Kernel && $this->kernel instanceof ResetInterface) {
                    $this->kernel->reset();
                }
            }
        });
    }

    /**
     * The Symfony Runtime front-controller shape — `public/index.php` requires
     * `vendor/autoload_runtime.php` and returns `function (array $context) { return new
     * Kernel(...); }` — called once, with its arguments resolved by name like Symfony Runtime
     * does: `$context` ($_SERVER + $_ENV, with APP_ENV and APP_DEBUG settled) and `$argv`.
     *
     * APP_ENV defaults to `prod` (Symfony's own default is `dev`): a deployed function is
     * production unless its serverless.yml says otherwise. A `.env` file in the task root is
     * loaded with Symfony Dotenv's bootEnv() when that component is installed.
     */
    public static function callFrontController(\Closure $app, string $projectDir): mixed
    {
        if (\is_file($projectDir . '/.env') && \class_exists(\Symfony\Component\Dotenv\Dotenv::class)) {
            (new \Symfony\Component\Dotenv\Dotenv())->bootEnv($projectDir . '/.env', 'prod');
        }
        $env = $_SERVER['APP_ENV'] ?? $_ENV['APP_ENV'] ?? 'prod';
        $debug = $_SERVER['APP_DEBUG'] ?? $_ENV['APP_DEBUG'] ?? ($env !== 'prod');
        $debug = \filter_var($debug, \FILTER_VALIDATE_BOOLEAN) ? '1' : '0';
        $_SERVER['APP_ENV'] = $_ENV['APP_ENV'] = (string) $env;
        $_SERVER['APP_DEBUG'] = $_ENV['APP_DEBUG'] = $debug;
        \putenv('APP_ENV=' . $env);
        \putenv('APP_DEBUG=' . $debug);

        $args = [];
        foreach ((new \ReflectionFunction($app))->getParameters() as $param) {
            $name = $param->getName();
            $args[] = match (true) {
                $name === 'context' => $_SERVER + $_ENV,
                $name === 'argv' => [],
                $param->isDefaultValueAvailable() => $param->getDefaultValue(),
                $param->allowsNull() => null,
                default => throw new RuntimeError(
                    'Runtime.InvalidHandler',
                    "The front controller's closure asks for \${$name}: in worker mode Tusk can pass \$context and \$argv only"
                ),
            };
        }
        return $app(...$args);
    }
}
