<?php

// Classic front controller (php-fpm, or `runtime: php-82-fpm`): builds the app per request.
// Tusk's worker mode uses app.php directly and builds it once per instance.
(require dirname(__DIR__) . '/app.php')->run();
