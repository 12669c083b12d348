<?php

// The app's autoloader, standing in for Composer's vendor/autoload.php: Debian's
// php-laravel-framework ships /usr/share/php/Illuminate/autoload.php (on PHP's include_path),
// which loads its dependencies' autoloaders too.
require_once 'Illuminate/autoload.php';

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'App\\')) {
        require __DIR__ . '/app/' . str_replace('\\', '/', substr($class, 4)) . '.php';
    }
});
