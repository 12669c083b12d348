<?php

declare(strict_types=1);

namespace App;

use Symfony\Bundle\FrameworkBundle\FrameworkBundle;
use Symfony\Bundle\TwigBundle\TwigBundle;
use Symfony\Bundle\FrameworkBundle\Kernel\MicroKernelTrait;
use Symfony\Component\DependencyInjection\Loader\Configurator\ContainerConfigurator;
use Symfony\Component\HttpKernel\Kernel as BaseKernel;
use Symfony\Component\Routing\Loader\Configurator\RoutingConfigurator;

final class Kernel extends BaseKernel
{
    use MicroKernelTrait;

    public function registerBundles(): iterable
    {
        return [new FrameworkBundle(), new TwigBundle()];
    }

    public function getProjectDir(): string
    {
        return \dirname(__DIR__);
    }

    /** The package is read-only on Tusk (and often on servers): cache and logs go to /tmp. */
    public function getCacheDir(): string
    {
        return $this->varDir() . '/cache/' . $this->environment;
    }

    public function getLogDir(): string
    {
        return $this->varDir() . '/log';
    }

    /** One per copy of the app: the compiled container holds absolute paths into it. */
    private function varDir(): string
    {
        return $_SERVER['APP_CACHE_DIR'] ?? sys_get_temp_dir() . '/symfony-' . substr(md5($this->getProjectDir()), 0, 12);
    }

    protected function configureContainer(ContainerConfigurator $container): void
    {
        $container->extension('framework', [
            'secret' => $_SERVER['APP_SECRET'] ?? 'change-me',
            'http_method_override' => false,
            // Native PHP sessions (files in session.save_path); see docs/guide-frameworks.md for
            // sessions shared by all instances.
            'session' => ['handler_id' => null, 'storage_factory_id' => 'session.storage.factory.native', 'cookie_secure' => 'auto', 'cookie_samesite' => 'lax'],
            'router' => ['utf8' => true],
            'php_errors' => ['log' => true],
        ]);
        $container->extension('twig', ['default_path' => '%kernel.project_dir%/templates', 'strict_variables' => true]);
        $container->services()
            ->defaults()->autowire()->autoconfigure()
            ->load('App\\Controller\\', __DIR__ . '/Controller/')->tag('controller.service_arguments')
            ->load('App\\Command\\', __DIR__ . '/Command/');
        $container->services()->set(BootInfo::class)->public();
    }

    protected function configureRoutes(RoutingConfigurator $routes): void
    {
        $c = Controller\AppController::class;
        $routes->add('hello', '/symfony/hello/{name}')->controller("$c::hello")->methods(['GET']);
        $routes->add('echo', '/symfony/echo')->controller("$c::echo")->methods(['POST']);
        $routes->add('headers', '/symfony/headers')->controller("$c::headers");
        $routes->add('session', '/symfony/session')->controller("$c::session");
        $routes->add('boot', '/symfony/boot')->controller("$c::boot");
        $routes->add('fail', '/symfony/fail')->controller("$c::fail");
        $routes->add('page', '/symfony/page')->controller("$c::page");
    }
}
