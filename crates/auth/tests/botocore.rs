//! Verifies signatures made by the real botocore (the library under the AWS CLI and boto3).
//!
//! Needs `python3` with botocore installed (`pip install botocore`); set `TUSK_PYTHON` to use
//! another interpreter. Without them these tests fail on purpose: a silent pass would hide
//! that nothing was checked.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tusk_auth::{authenticate, AuthError, Credentials, Principal, RequestParts};

const SECRET: &str = "tusk-admin-token-0123456789abcdef";
/// The signing time botocore is made to use: 2024-05-17T10:30:00Z.
const SIGNED_AT: u64 = 1_715_941_800;

/// Signs requests two ways and prints what would go on the wire, as JSON:
/// by hand with `SigV4Auth` / `SigV4QueryAuth` on an `AWSRequest`, and through a real
/// Lambda client whose HTTP sending is replaced by a hook that records the request.
const SCRIPT: &str = r#"
import datetime, json, sys
try:
    import botocore, botocore.auth, botocore.awsrequest, botocore.credentials, botocore.session
except ImportError as e:
    sys.stderr.write("botocore is not importable (%s); install it with: pip install botocore\n" % e)
    sys.exit(3)

spec = json.loads(sys.argv[1])
secret = spec["secret"]
fixed = datetime.datetime.fromtimestamp(spec["time"], datetime.timezone.utc).replace(tzinfo=None)
# SigV4Auth reads the clock through this module-level name.
botocore.auth.get_current_datetime = lambda *a, **k: fixed

ENDPOINT = "http://127.0.0.1:8080"
creds = botocore.credentials.Credentials("tusk", secret)
out = []

def record(name, req, canonical=None):
    body = req.body
    if body is None:
        body = b""
    elif hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = []
    for k, v in req.headers.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        headers.append([k, v])
    out.append({"name": name, "method": req.method, "url": req.url,
                "headers": headers, "body": body.hex(), "canonical": canonical})

def manual(name, method, path, body=None, headers=None, presign=False):
    req = botocore.awsrequest.AWSRequest(method=method, url=ENDPOINT + path, data=body,
                                         headers=dict(headers or {}))
    canonical = None
    if presign:
        botocore.auth.SigV4QueryAuth(creds, "lambda", "us-east-1", expires=300).add_auth(req)
    else:
        auth = botocore.auth.SigV4Auth(creds, "lambda", "us-east-1")
        # Capture botocore's own canonical request (before the Authorization header exists).
        req.context["timestamp"] = fixed.strftime("%Y%m%dT%H%M%SZ")
        auth._modify_request_before_signing(req)
        canonical = auth.canonical_request(req)
        auth.add_auth(req)
    record(name, req.prepare(), canonical)

ARN_PATH = "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn"
manual("invoke", "POST", "/2015-03-31/functions/my-fn/invocations?Qualifier=live",
       body=b'{"hello": "world"}',
       headers={"Content-Type": "application/json", "X-Amz-Invocation-Type": "RequestResponse"})
manual("invoke_arn", "POST", "/2015-03-31/functions/" + ARN_PATH + "/invocations?Qualifier=%24LATEST",
       body=b'{"hello": "world"}', headers={"Content-Type": "application/json"})
manual("invoke_raw_colon", "POST",
       "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:my-fn/invocations",
       body=b"{}")
manual("list", "GET", "/2015-03-31/functions/?MaxItems=10&Marker=abc")
manual("list_unencoded_query", "GET", "/2015-03-31/functions/?Marker=a/b+c&MaxItems=10")
manual("list_date_header", "GET", "/2015-03-31/functions/?MaxItems=10&Marker=abc",
       headers={"Date": "placeholder, botocore rewrites it"})
manual("list_presigned", "GET", "/2015-03-31/functions/?MaxItems=10&Marker=abc", presign=True)

class Raw:
    def __init__(self, data):
        self.data = data
    def stream(self, **kwargs):
        yield self.data

client = botocore.session.get_session().create_client(
    "lambda", region_name="us-east-1", endpoint_url=ENDPOINT,
    aws_access_key_id="tusk", aws_secret_access_key=secret)
current = {}
def capture(request, **kwargs):
    record(current["name"], request)
    return botocore.awsrequest.AWSResponse(request.url, 200, {"Content-Type": "application/json"},
                                           Raw(current["reply"]))
client.meta.events.register("before-send.lambda.*", capture)
calls = [
    ("client_invoke_arn", "invoke",
     dict(FunctionName="arn:aws:lambda:us-east-1:123456789012:function:my-fn", Qualifier="live",
          Payload=b'{"hello": "world"}', LogType="Tail"), b"{}"),
    ("client_invoke_alias", "invoke", dict(FunctionName="my-fn:prod", Payload=b"[1, 2, 3]"), b"{}"),
    ("client_list", "list_functions", dict(MaxItems=10, Marker="abc"), b'{"Functions": []}'),
    ("client_list_odd_marker", "list_functions", dict(MaxItems=10, Marker="a/b+c=d e~f%"),
     b'{"Functions": []}'),
    ("client_get_function", "get_function", dict(FunctionName="my-fn", Qualifier="$LATEST"),
     b'{"Configuration": {}}'),
]
for name, op, kwargs, reply in calls:
    current.update(name=name, reply=reply)
    getattr(client, op)(**kwargs)

print(json.dumps({"botocore": botocore.__version__, "requests": out}))
"#;

/// One request as botocore would put it on the wire.
#[derive(Clone)]
struct Wire {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
    canonical: Option<String>,
}

impl Wire {
    fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            raw_path: &self.path,
            raw_query: &self.query,
            headers: &self.headers,
            body: &self.body,
        }
    }

    fn check_at(&self, creds: &Credentials, now: SystemTime) -> Result<Principal, AuthError> {
        authenticate(&self.parts(), creds, now)
    }

    fn check(&self) -> Result<Principal, AuthError> {
        self.check_at(&creds(), at(SIGNED_AT + 2))
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn creds() -> Credentials {
    Credentials::from_admin_token(SECRET)
}

fn botocore_requests() -> &'static [Wire] {
    static CELL: OnceLock<Vec<Wire>> = OnceLock::new();
    CELL.get_or_init(run_botocore)
}

fn run_botocore() -> Vec<Wire> {
    let python = std::env::var("TUSK_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let spec = serde_json::json!({ "secret": SECRET, "time": SIGNED_AT }).to_string();
    let output = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(spec)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "could not run `{python}` ({e}): these tests need Python 3 with botocore \
                 (`pip install botocore`); set TUSK_PYTHON to point at another interpreter"
            )
        });
    assert!(
        output.status.success(),
        "the botocore signing script failed ({}); these tests need Python 3 with botocore \
         (`pip install botocore`).\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: Value = serde_json::from_slice(&output.stdout).expect("script prints JSON");
    eprintln!("signed with botocore {}", doc["botocore"]);
    doc["requests"]
        .as_array()
        .expect("requests array")
        .iter()
        .map(wire_from_json)
        .collect()
}

fn wire_from_json(v: &Value) -> Wire {
    let url = v["url"].as_str().expect("url");
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path_and_query) = rest.split_at(rest.find('/').expect("path"));
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut headers = HeaderMap::new();
    // botocore leaves Host to the HTTP client, which sends the URL's authority.
    headers.insert("host", HeaderValue::from_str(authority).unwrap());
    for pair in v["headers"].as_array().expect("headers") {
        let name = pair[0].as_str().unwrap();
        let value = pair[1].as_str().unwrap();
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    Wire {
        name: v["name"].as_str().unwrap().to_owned(),
        method: v["method"].as_str().unwrap().to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: hex::decode(v["body"].as_str().unwrap()).unwrap(),
        canonical: v["canonical"].as_str().map(str::to_owned),
    }
}

fn request(name: &str) -> Wire {
    botocore_requests()
        .iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("botocore script produced no `{name}`"))
        .clone()
}

#[test]
fn every_botocore_request_verifies() {
    let all = botocore_requests();
    assert_eq!(all.len(), 12, "the script should sign every case");
    for w in all {
        assert_eq!(
            w.check(),
            Ok(Principal::Admin),
            "{} ({} {}?{})",
            w.name,
            w.method,
            w.path,
            w.query
        );
    }
}

#[test]
fn arn_path_is_double_encoded_in_botocores_canonical_request() {
    let w = request("invoke_arn");
    let canonical = w.canonical.as_deref().expect("canonical request recorded");
    let uri = canonical.lines().nth(1).expect("canonical URI line");
    assert_eq!(
        uri,
        "/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1%253A123456789012\
         %253Afunction%253Amy-fn/invocations"
    );
    // The real client encodes ':' in FunctionName as %3A on the wire.
    let c = request("client_invoke_arn");
    assert!(c.path.contains("arn%3Aaws%3Alambda"), "{}", c.path);
    assert_eq!(c.query, "Qualifier=live");
}

#[test]
fn wrong_secret_fails() {
    for name in [
        "invoke_arn",
        "client_invoke_arn",
        "client_list",
        "list_presigned",
    ] {
        let w = request(name);
        let wrong = Credentials::from_admin_token("not-the-token");
        assert_eq!(
            w.check_at(&wrong, at(SIGNED_AT)),
            Err(AuthError::SignatureMismatch),
            "{name}"
        );
        let other_key = Credentials::new("someone", SECRET);
        assert_eq!(
            w.check_at(&other_key, at(SIGNED_AT)),
            Err(AuthError::UnknownAccessKey("tusk".into())),
            "{name}"
        );
    }
}

#[test]
fn tampered_body_fails() {
    for name in [
        "invoke",
        "invoke_arn",
        "client_invoke_arn",
        "client_invoke_alias",
    ] {
        let mut w = request(name);
        w.body = br#"{"hello": "mallory"}"#.to_vec();
        assert_eq!(w.check(), Err(AuthError::SignatureMismatch), "{name}");
    }
}

#[test]
fn tampered_path_fails() {
    for name in [
        "invoke",
        "invoke_arn",
        "client_invoke_arn",
        "client_get_function",
    ] {
        let mut w = request(name);
        w.path = w.path.replace("my-fn", "other-fn");
        assert_eq!(w.check(), Err(AuthError::SignatureMismatch), "{name}");
    }
    let mut w = request("client_list");
    w.path = "/2015-03-31/functions/x".to_owned();
    assert_eq!(w.check(), Err(AuthError::SignatureMismatch));
}

#[test]
fn tampered_query_or_header_fails() {
    let mut w = request("client_list");
    w.query = w.query.replace("MaxItems=10", "MaxItems=50");
    assert_eq!(w.check(), Err(AuthError::SignatureMismatch));

    let mut w = request("invoke");
    w.headers
        .insert("x-amz-invocation-type", HeaderValue::from_static("Event"));
    assert_eq!(w.check(), Err(AuthError::SignatureMismatch));

    let mut w = request("invoke_arn");
    w.headers
        .insert("host", HeaderValue::from_static("evil.example:8080"));
    assert_eq!(w.check(), Err(AuthError::SignatureMismatch));
}

/// An `x-amz-*` header added to a request botocore signed is refused, naming the header;
/// headers botocore leaves unsigned itself (User-Agent, X-Amzn-Trace-Id) still pass.
#[test]
fn unsigned_amz_headers_are_refused() {
    for name in [
        "invoke_arn",
        "client_invoke_arn",
        "client_list",
        "list_presigned",
    ] {
        let mut w = request(name);
        w.headers
            .insert("x-amz-invocation-type", HeaderValue::from_static("DryRun"));
        let got = w.check();
        assert!(
            matches!(&got, Err(AuthError::UnsignedHeaders(h)) if h == "x-amz-invocation-type"),
            "{name}: {got:?}"
        );
        let message = got.unwrap_err().to_string();
        assert!(
            message.contains("not signed: x-amz-invocation-type"),
            "{message}"
        );

        let mut w = request(name);
        w.headers
            .insert("user-agent", HeaderValue::from_static("proxy/1"));
        w.headers
            .insert("x-amzn-trace-id", HeaderValue::from_static("Root=1-abc"));
        assert_eq!(w.check(), Ok(Principal::Admin), "{name}");
    }
}

#[test]
fn expired_or_future_signatures_fail() {
    for name in ["invoke_arn", "client_invoke_arn", "list_date_header"] {
        let w = request(name);
        let late = w.check_at(&creds(), at(SIGNED_AT + 16 * 60));
        assert!(
            matches!(&late, Err(AuthError::Expired(m)) if m.contains("20240517T103000Z")),
            "{name}: {late:?}"
        );
        let early = w.check_at(&creds(), at(SIGNED_AT - 16 * 60));
        assert!(
            matches!(early, Err(AuthError::ClockSkew(_))),
            "{name}: {early:?}"
        );
    }
    // A presigned URL lives for its X-Amz-Expires (300 s here), not 15 minutes.
    let w = request("list_presigned");
    assert_eq!(
        w.check_at(&creds(), at(SIGNED_AT + 300)),
        Ok(Principal::Admin)
    );
    assert!(matches!(
        w.check_at(&creds(), at(SIGNED_AT + 301)),
        Err(AuthError::Expired(_))
    ));
}

#[test]
fn error_codes_match_lambda() {
    let mut w = request("client_invoke_arn");
    w.body.push(b' ');
    let err = w.check().unwrap_err();
    assert_eq!(err.aws_error_type(), "InvalidSignatureException");
    assert_eq!(err.status(), 403);
}
