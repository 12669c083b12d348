<?php

declare(strict_types=1);

namespace Psr\Http\Server;

use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;

/**
 * PSR-15 middleware (psr/http-server-middleware 1.0).
 *
 * Fallback copy for applications deployed without a vendor/ directory; the Tusk runtime
 * autoloads it only when no Composer autoloader provides the interface.
 */
interface MiddlewareInterface
{
    /**
     * Processes a request, delegating to the handler to produce the response when it wants to.
     */
    public function process(ServerRequestInterface $request, RequestHandlerInterface $handler): ResponseInterface;
}
