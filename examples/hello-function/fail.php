<?php

declare(strict_types=1);

// An uncaught exception becomes an invocation error:
// {"errorType": "RuntimeException", "errorMessage": "...", "stackTrace": [...]}
// and the instance keeps serving the next invocations.
return function (array $event): never {
    throw new RuntimeException('Something went wrong: ' . ($event['reason'] ?? 'this function always fails'));
};
