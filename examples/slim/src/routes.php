<?php

declare(strict_types=1);

use Psr\Http\Message\ResponseInterface as Response;
use Psr\Http\Message\ServerRequestInterface as Request;
use Slim\App;

/** The application's routes; sessions use PHP's native session functions, as a Slim 3 app would. */
function register_routes(App $app): void
{
    $container = $app->getContainer();

    $app->get('/slim/hello/{name}', function (Request $request, Response $response, array $args) {
        return $response->withJson(['hello' => $args['name'], 'query' => $request->getQueryParams()]);
    });

    // Request bodies: JSON and forms both end up in getParsedBody().
    $app->post('/slim/echo', function (Request $request, Response $response) {
        return $response->withJson([
            'body' => $request->getParsedBody(),
            'contentType' => $request->getHeaderLine('Content-Type'),
            'files' => array_map(
                fn ($f) => ['name' => $f->getClientFilename(), 'size' => $f->getSize(), 'sha1' => sha1((string) $f->getStream())],
                $request->getUploadedFiles(),
            ),
        ]);
    });

    $app->get('/slim/headers', function (Request $request, Response $response) {
        return $response
            ->withHeader('X-Seen', $request->getHeaderLine('X-Custom'))
            ->withAddedHeader('Set-Cookie', 'flavour=chocolate; Path=/')
            ->withAddedHeader('Set-Cookie', 'size=large; Path=/; HttpOnly')
            ->withJson(['cookies' => $request->getCookieParams(), 'server' => $_SERVER['HTTP_X_CUSTOM'] ?? null]);
    });

    // A counter in the native PHP session: one per client cookie.
    $app->get('/slim/session', function (Request $request, Response $response) {
        session_start();
        $_SESSION['count'] = ($_SESSION['count'] ?? 0) + 1;
        return $response->withJson(['count' => $_SESSION['count'], 'id' => session_id()]);
    });

    $app->get('/slim/boot', function (Request $request, Response $response) use ($container) {
        return $response->withJson($container['bootInfo'] + ['pidNow' => getmypid()]);
    });

    // A small HTML page: the benchmark's request (bench/frameworks.py).
    $app->get('/slim/page', function (Request $request, Response $response) {
        $items = '';
        foreach (range(1, 20) as $i) {
            $items .= '<li>Item ' . $i . '</li>';
        }
        $name = htmlspecialchars($request->getQueryParams()['name'] ?? 'world');
        return $response->write('<!doctype html><title>Tusk</title><h1>Hello ' . $name . '</h1><ul>' . $items . '</ul>');
    });

    $app->get('/slim/fail', function () {
        throw new RuntimeException('something broke in the app');
    });
}
