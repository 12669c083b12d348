<?php

// The app's autoloader, standing in for Composer's vendor/autoload.php: Debian's Symfony
// packages ship one autoload.php each under /usr/share/php (on PHP's include_path).
require_once 'Symfony/Bundle/FrameworkBundle/autoload.php';
require_once 'Symfony/Bundle/TwigBundle/autoload.php';
require_once 'Symfony/Component/Console/autoload.php';

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'App\\')) {
        require __DIR__ . '/src/' . str_replace('\\', '/', substr($class, 4)) . '.php';
    }
});
