<?php

declare(strict_types=1);

use Bref\Context\Context;

// A function handler: the file returns a callable taking the event (decoded JSON) and the context.
// Whatever it returns is JSON-encoded into the invocation result.
return fn (array $event, Context $context): array => [
    'hello' => $event['name'] ?? 'world',
    'requestId' => $context->getAwsRequestId(),
];
