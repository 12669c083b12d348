<?php

namespace App\Http\Controllers;

use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;
use Illuminate\Routing\Controller;
use Illuminate\Support\Facades\Cookie;

class AppController extends Controller
{
    /** Set when the application booted: the same for every request one instance serves. */
    public static ?float $bootedAt = null;
    public static int $requests = 0;

    public function hello(Request $request, string $name): JsonResponse
    {
        return response()->json(['hello' => $name, 'query' => $request->query()]);
    }

    public function echo(Request $request): JsonResponse
    {
        $files = [];
        foreach ($request->allFiles() as $field => $file) {
            $files[$field] = ['name' => $file->getClientOriginalName(), 'size' => $file->getSize(), 'sha1' => sha1_file($file->getPathname())];
        }
        return response()->json([
            'json' => $request->isJson() ? $request->json()->all() : null,
            'form' => $request->isJson() ? [] : $request->request->all(),
            'files' => $files,
        ]);
    }

    public function headers(Request $request): JsonResponse
    {
        Cookie::queue('flavour', 'chocolate', 10);
        return response()
            ->json(['cookies' => $request->cookies->all(), 'custom' => $request->header('X-Custom')])
            ->header('X-Seen', (string) $request->header('X-Custom'))
            ->cookie('size', 'large', 10);
    }

    public function session(Request $request): JsonResponse
    {
        $count = $request->session()->get('count', 0) + 1;
        $request->session()->put('count', $count);
        return response()->json(['count' => $count]);
    }

    public function boot(): JsonResponse
    {
        return response()->json(['bootedAt' => self::$bootedAt, 'requests' => ++self::$requests]);
    }

    public function fail(): never
    {
        throw new \RuntimeException('something broke in the app');
    }

    public function page(Request $request)
    {
        $items = '';
        foreach (range(1, 20) as $i) {
            $items .= '<li>Item ' . $i . '</li>';
        }
        return response('<!doctype html><title>Tusk</title><h1>Hello ' . e($request->query('name', 'world')) . '</h1><ul>' . $items . '</ul>');
    }
}
