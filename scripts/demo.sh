#!/usr/bin/env bash
# Sets up everything, starts a Tusk node on 127.0.0.1:8080 and deploys the bundled examples.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
echo "==> building tusk (release)"
cargo build --release --quiet --bin tusk
TUSK="$PWD/target/release/tusk"
LISTEN="${TUSK_LISTEN:-127.0.0.1:8080}"
DATA="$PWD/data"
export TUSK_SERVER="http://$LISTEN" TUSK_DATA_DIR="$DATA"

if ! curl -fsS "$TUSK_SERVER/_tusk/health" >/dev/null 2>&1; then
  echo "==> starting a node on $LISTEN (data in $DATA, log in $DATA/node.log)"
  mkdir -p "$DATA"
  nohup "$TUSK" serve --listen "$LISTEN" --data-dir "$DATA" >"$DATA/node.log" 2>&1 &
  for _ in $(seq 1 100); do
    curl -fsS "$TUSK_SERVER/_tusk/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

for example in hello-function web-app console provided slim symfony laravel legacy; do  # provided-awslambdaric needs awslambdaric vendored: see its README
  echo "==> tusk deploy examples/$example"
  "$TUSK" deploy "examples/$example"
done

cat <<MSG

Tusk is running at $TUSK_SERVER (stop it with: pkill -f 'tusk serve --listen $LISTEN')
Try (the tusk commands find this node with: export TUSK_SERVER=$TUSK_SERVER TUSK_DATA_DIR=$DATA):
  $TUSK invoke hello-function-dev-hello --data '{"name":"Tusk"}' --log
  curl $TUSK_SERVER/hello
  curl $TUSK_SERVER/   (the web app: forms, uploads, cookies; open it in a browser)
  curl $TUSK_SERVER/symfony/page  $TUSK_SERVER/laravel/hello/Ada  $TUSK_SERVER/slim/boot
      (framework apps in worker mode; docs/guide-frameworks.md)
  curl $TUSK_SERVER/legacy/   (a php-fpm app keeping its files on a volume)
  $TUSK ls
  $TUSK logs hello-function-dev-hello
  aws lambda invoke --endpoint-url $TUSK_SERVER --function-name hello-function-dev-hello \\
      --payload '{"name":"aws"}' out.json
      (credentials: AWS_ACCESS_KEY_ID=tusk AWS_SECRET_ACCESS_KEY=\$(cat $DATA/admin.token))
MSG
