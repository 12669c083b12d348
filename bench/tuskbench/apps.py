"""The PHP projects the scenarios deploy, written into a scenario's temp dir."""

from pathlib import Path

WEB_HELLO = '<?php echo "Hello";\n'

# The function: does nothing, and reports the time that took (its "own time"), which the
# suite subtracts from the end-to-end latency to get Tusk's overhead.
FUNCTION_HELLO = """<?php
return static function (array $event, $context): array {
    $t0 = hrtime(true);
    $out = ['message' => 'Hello'];
    $out['handler_ns'] = hrtime(true) - $t0;
    return $out;
};
"""

# Runs the handler once in a bare `php` process: the PHP start + handler floor of a cold start.
FUNCTION_FLOOR = """<?php
$handler = require __DIR__ . '/index.php';
echo json_encode($handler([], null));
"""

# A minimal Symfony application on Debian's php-symfony-* packages (autoloaded from
# /usr/share/php): HttpKernel + EventDispatcher + Routing (RouterListener, UrlMatcher), one
# route, one controller. Per request it boots the kernel, as php-fpm apps do.
SYMFONY_APP = """<?php
declare(strict_types=1);

require '/usr/share/php/Symfony/Component/HttpKernel/autoload.php';
require '/usr/share/php/Symfony/Component/Routing/autoload.php';

use Symfony\\Component\\EventDispatcher\\EventDispatcher;
use Symfony\\Component\\HttpFoundation\\Request;
use Symfony\\Component\\HttpFoundation\\RequestStack;
use Symfony\\Component\\HttpFoundation\\Response;
use Symfony\\Component\\HttpKernel\\Controller\\ArgumentResolver;
use Symfony\\Component\\HttpKernel\\Controller\\ControllerResolver;
use Symfony\\Component\\HttpKernel\\EventListener\\RouterListener;
use Symfony\\Component\\HttpKernel\\HttpKernel;
use Symfony\\Component\\Routing\\Matcher\\UrlMatcher;
use Symfony\\Component\\Routing\\RequestContext;
use Symfony\\Component\\Routing\\Route;
use Symfony\\Component\\Routing\\RouteCollection;

$routes = new RouteCollection();
$routes->add('hello', new Route('/symfony/{name}', [
    'name' => 'World',
    '_controller' => static fn (string $name): Response => new Response('Hello ' . $name),
]));

$requestStack = new RequestStack();
$dispatcher = new EventDispatcher();
$dispatcher->addSubscriber(new RouterListener(new UrlMatcher($routes, new RequestContext()), $requestStack));
$kernel = new HttpKernel($dispatcher, new ControllerResolver(), $requestStack, new ArgumentResolver());

$request = Request::createFromGlobals();
$response = $kernel->handle($request);
$response->send();
$kernel->terminate($request, $response);
"""

SYMFONY_AUTOLOADERS = [
    "/usr/share/php/Symfony/Component/HttpKernel/autoload.php",
    "/usr/share/php/Symfony/Component/Routing/autoload.php",
]


def _q(s):
    return "'" + str(s).replace("'", "''") + "'"


def write_service(root, service, functions, files):
    """A project: serverless.yml for `functions` ({name: {handler, runtime, ...}}) + `files`.

    Function keys: handler, runtime, route (httpApi event), reserved, provisioned, env (dict).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    y = [f"service: {service}", "provider:", "  name: aws", "  runtime: php-82", "  timeout: 30", "functions:"]
    for name, f in functions.items():
        y += [f"  {name}:", f"    handler: {f['handler']}"]
        if f.get("runtime"):
            y.append(f"    runtime: {f['runtime']}")
        if f.get("reserved") is not None:
            y.append(f"    reservedConcurrency: {f['reserved']}")
        if f.get("provisioned") is not None:
            y.append(f"    provisionedConcurrency: {f['provisioned']}")
        if f.get("env"):
            y.append("    environment:")
            y += [f"      {k}: {_q(v)}" for k, v in f["env"].items()]
        if f.get("route"):
            y += ["    events:", f"      - httpApi: {_q(f['route'])}"]
    (root / "serverless.yml").write_text("\n".join(y) + "\n")
    return root


def web_hello(root, service, route="*", workers=None, env=None, script=WEB_HELLO):
    return write_service(
        root,
        service,
        {"web": {"handler": "public/index.php", "runtime": "php-82-fpm", "route": route,
                 "reserved": workers, "provisioned": workers, "env": env}},
        {"public/index.php": script},
    )


def function_hello(root, service, route=None, workers=None, env=None):
    return write_service(
        root,
        service,
        {"hello": {"handler": "index.php", "route": route, "reserved": workers, "provisioned": workers, "env": env}},
        {"index.php": FUNCTION_HELLO, "floor.php": FUNCTION_FLOOR},
    )
