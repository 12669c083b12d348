<?php

declare(strict_types=1);

// Debian's packages put their autoloaders on PHP's include_path (/usr/share/php).
require_once 'Slim/autoload.php';
require_once __DIR__ . '/src/routes.php';

use Slim\App;

// Built once per instance: what this costs is paid on the instance's first request only.
$bootedAt = microtime(true);

$app = new App([
    'settings' => [
        // Slim's own error page (HTML, or JSON for Accept: application/json) for exceptions.
        'displayErrorDetails' => getenv('APP_DEBUG') === '1',
        'addContentLengthHeader' => false,
    ],
]);
$app->getContainer()['bootInfo'] = ['pid' => getmypid(), 'bootedAt' => $bootedAt];
register_routes($app);

return $app;
