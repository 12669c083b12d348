<?php

declare(strict_types=1);

namespace App;

/** When this process built the container: stays the same for every request a worker serves. */
final class BootInfo
{
    public readonly float $bootedAt;
    public int $requests = 0;

    public function __construct()
    {
        $this->bootedAt = microtime(true);
    }
}
