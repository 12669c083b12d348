<?php

// Worker mode (`runtime: php-82`): the handler returns the kernel; Tusk boots it once per
// instance and hands it every HTTP request that instance serves.
require_once __DIR__ . '/autoload.php';

return new App\Kernel($_SERVER['APP_ENV'] ?? 'prod', (bool) ($_SERVER['APP_DEBUG'] ?? false));
