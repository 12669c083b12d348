<?php

declare(strict_types=1);

namespace Psr\Http\Server;

use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;

/**
 * PSR-15 request handler (psr/http-server-handler 1.0).
 *
 * Fallback copy for applications deployed without a vendor/ directory (Debian has no package for
 * it); the Tusk runtime autoloads it only when no Composer autoloader provides the interface.
 */
interface RequestHandlerInterface
{
    /**
     * Handles a request and produces a response.
     */
    public function handle(ServerRequestInterface $request): ResponseInterface;
}
