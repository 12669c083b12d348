<?php

// Classic front controller, for php-fpm (or `runtime: php-82-fpm`): boots the kernel for
// every request. Tusk's worker mode uses kernel.php instead and boots it once per instance.
use Symfony\Component\HttpFoundation\Request;

$kernel = require dirname(__DIR__) . '/kernel.php';
$request = Request::createFromGlobals();
$response = $kernel->handle($request);
$response->send();
$kernel->terminate($request, $response);
