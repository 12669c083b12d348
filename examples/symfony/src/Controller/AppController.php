<?php

declare(strict_types=1);

namespace App\Controller;

use App\BootInfo;
use Symfony\Component\HttpFoundation\Cookie;
use Symfony\Component\HttpFoundation\JsonResponse;
use Symfony\Component\HttpFoundation\Request;
use Symfony\Component\HttpFoundation\Response;
use Twig\Environment;

final class AppController
{
    public function hello(string $name, Request $request): JsonResponse
    {
        return new JsonResponse(['hello' => $name, 'query' => $request->query->all()]);
    }

    /** JSON bodies, forms and uploads. */
    public function echo(Request $request): JsonResponse
    {
        $files = [];
        foreach ($request->files->all() as $field => $file) {
            $files[$field] = ['name' => $file->getClientOriginalName(), 'size' => $file->getSize(), 'sha1' => sha1_file($file->getPathname())];
        }
        return new JsonResponse([
            'json' => $request->getContentType() === 'json' ? $request->toArray() : null,
            'form' => $request->request->all(),
            'files' => $files,
        ]);
    }

    public function headers(Request $request): JsonResponse
    {
        $response = new JsonResponse(['cookies' => $request->cookies->all(), 'custom' => $request->headers->get('X-Custom')]);
        $response->headers->set('X-Seen', (string) $request->headers->get('X-Custom'));
        $response->headers->setCookie(Cookie::create('flavour', 'chocolate'));
        $response->headers->setCookie(Cookie::create('size', 'large'));
        return $response;
    }

    public function session(Request $request): JsonResponse
    {
        $session = $request->getSession();
        $session->set('count', $session->get('count', 0) + 1);
        return new JsonResponse(['count' => $session->get('count')]);
    }

    public function boot(BootInfo $boot): JsonResponse
    {
        return new JsonResponse(['bootedAt' => $boot->bootedAt, 'requests' => ++$boot->requests]);
    }

    public function fail(): Response
    {
        throw new \RuntimeException('something broke in the app');
    }

    /** A small HTML page rendered with Twig: the benchmark's request (bench/frameworks.py). */
    public function page(Request $request, Environment $twig): Response
    {
        return new Response($twig->render('page.html.twig', [
            'name' => (string) $request->query->get('name', 'world'),
            'items' => range(1, 20),
        ]));
    }
}
