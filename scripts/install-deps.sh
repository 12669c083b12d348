#!/usr/bin/env bash
# Installs what Tusk and its tests need, only when missing: PHP 8.2 (CLI, CGI, FPM, opcache)
# and nats-server (JetStream, for the cluster test) from Debian's packages, nginx + wrk for
# the benchmarks, and the Python clients the integration tests drive Tusk with (AWS CLI,
# boto3, pytest, requests).
set -euo pipefail

# (Debian has no PSR-15 package: runtime/php ships those two interfaces itself.)
want_debs=(curl php8.2-cli php8.2-cgi php8.2-fpm php8.2-opcache php-nyholm-psr7
  php-psr-http-message php-psr-http-factory nats-server
  # The framework examples (examples/slim, symfony, laravel) autoload these from /usr/share/php.
  php-slim php-symfony-framework-bundle php-symfony-twig-bundle php-symfony-runtime php-symfony-console
  php-laravel-framework)
if [[ "${TUSK_WITH_BENCH_TOOLS:-0}" == 1 ]]; then
  want_debs+=(nginx-light wrk)
fi
missing=()
for p in "${want_debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "error: cargo (Rust) is required; install it with rustup or Debian's cargo package" >&2
  exit 1
fi

if [[ "${TUSK_WITH_TEST_TOOLS:-0}" == 1 ]]; then
  py_missing=()
  python3 -c "import pytest" 2>/dev/null || py_missing+=(pytest)
  python3 -c "import requests" 2>/dev/null || py_missing+=(requests)
  python3 -c "import boto3" 2>/dev/null || py_missing+=(boto3)
  python3 -c "import awslambdaric" 2>/dev/null || py_missing+=(awslambdaric)
  command -v aws >/dev/null || py_missing+=(awscli)
  if ((${#py_missing[@]})); then
    echo "==> installing Python packages: ${py_missing[*]}"
    python3 -m pip install -q "${py_missing[@]}"
  fi
fi
