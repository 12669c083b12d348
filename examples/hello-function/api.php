<?php

declare(strict_types=1);

use Nyholm\Psr7\Response;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;
use Psr\Http\Server\RequestHandlerInterface;

// A PSR-15 handler: HTTP events become PSR-7 requests, and the PSR-7 response becomes the HTTP
// response. Works without a vendor/ directory: the runtime falls back to the node's Debian
// packages (php-nyholm-psr7) and its own copy of the PSR-15 interfaces.
return new class implements RequestHandlerInterface {
    public function handle(ServerRequestInterface $request): ResponseInterface
    {
        $name = $request->getQueryParams()['name'] ?? 'world';
        $context = $request->getAttribute('lambda-context');

        $body = json_encode([
            'message' => "Hello $name!",
            'method' => $request->getMethod(),
            'path' => $request->getUri()->getPath(),
            'requestId' => $context?->getAwsRequestId(),
        ], JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);

        return new Response(200, ['Content-Type' => 'application/json'], $body);
    }
};
