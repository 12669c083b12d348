<?php

declare(strict_types=1);

namespace Bref\Context;

/**
 * The invocation context handed to handlers as their second argument.
 *
 * Loaded by the Tusk runtime only when the application does not ship bref/bref itself (its
 * Composer autoloader wins), so handlers type-hinted `fn (array $event, Context $context)` work
 * with or without Bref installed. Same constructor and getters as Bref's class, plus a few
 * extras (getDeadlineMs, getClientContext, getCognitoIdentity) that Bref's own class lacks.
 */
final class Context implements \JsonSerializable
{
    /**
     * @param int $deadlineMs Unix timestamp of the deadline, in milliseconds
     */
    public function __construct(
        private string $awsRequestId,
        private int $deadlineMs,
        private string $invokedFunctionArn,
        private string $traceId,
        private ?string $clientContext = null,
        private ?string $cognitoIdentity = null,
    ) {
    }

    /** Test helper: a context with a deadline five minutes from now. */
    public static function fake(): self
    {
        return new self('fake-aws-request-id', (int) (\microtime(true) * 1000) + 300_000, 'fake-invoked-function-arn', 'fake-trace-id');
    }

    /** The identifier of this invocation (also printed in the START/END/REPORT log lines). */
    public function getAwsRequestId(): string
    {
        return $this->awsRequestId;
    }

    /** Unix timestamp in milliseconds at which the invocation times out. */
    public function getDeadlineMs(): int
    {
        return $this->deadlineMs;
    }

    /** Milliseconds left before the invocation times out. */
    public function getRemainingTimeInMillis(): int
    {
        return $this->deadlineMs - (int) (\microtime(true) * 1000);
    }

    /** The ARN used to invoke the function (it names the version or alias when one was given). */
    public function getInvokedFunctionArn(): string
    {
        return $this->invokedFunctionArn;
    }

    /** The X-Ray style trace header of this invocation (also in the _X_AMZN_TRACE_ID env var). */
    public function getTraceId(): string
    {
        return $this->traceId;
    }

    /** The raw Lambda-Runtime-Client-Context header (JSON), if the invoker sent one. */
    public function getClientContext(): ?string
    {
        return $this->clientContext;
    }

    /** The raw Lambda-Runtime-Cognito-Identity header (JSON), if the invoker sent one. */
    public function getCognitoIdentity(): ?string
    {
        return $this->cognitoIdentity;
    }

    public function jsonSerialize(): array
    {
        return [
            'awsRequestId' => $this->awsRequestId,
            'deadlineMs' => $this->deadlineMs,
            'invokedFunctionArn' => $this->invokedFunctionArn,
            'traceId' => $this->traceId,
        ];
    }
}
