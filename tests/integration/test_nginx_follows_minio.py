"""nginx in front of MinIO when the engine restarts MinIO with a new address.

Under compose, nginx reaches MinIO by its service name through Docker's DNS; a restarted MinIO
container may get another address. nginx must look the name up again (not keep the address it
found at start, answering 502 to every artifact request from then on), and its health endpoint
must say when MinIO is unreachable instead of staying green.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from tests.support.dns import dns_server
from tests.support.nginx import nginx_proxy, proxy_env
from tests.support.s3 import S3Server, s3_client
from tools.processes import free_ports, http_ok, wait_until

SERVICE_NAME = "minio.stack.internal"
FIRST_ADDRESS, SECOND_ADDRESS = "127.0.0.2", "127.0.0.3"


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_nginx_follows_minio_to_a_new_address_and_its_health_says_when_it_cannot(
    tmp_path: Path,
) -> None:
    port, console_port = free_ports(2)
    first = S3Server(port=port, log_path=tmp_path / "first.log", host=FIRST_ADDRESS)
    second = S3Server(port=port, log_path=tmp_path / "second.log", host=SECOND_ADDRESS)
    with dns_server(SERVICE_NAME, FIRST_ADDRESS) as (name, resolver):
        first.start()
        env = proxy_env(port, console_port, MINIO_HOST=SERVICE_NAME, NGINX_LOCAL_RESOLVERS=resolver)
        try:
            with nginx_proxy(tmp_path / "nginx", env) as proxy:
                client = s3_client(proxy.s3_url)
                client.create_bucket(Bucket="artifacts")
                client.put_object(Bucket="artifacts", Key="before", Body=b"1")
                assert first.object_keys("artifacts") == ["before"]

                first.stop()
                assert status_of(proxy.health_url) == 502, "health stays green without MinIO"

                name.address = SECOND_ADDRESS
                second.start()
                wait_until(
                    lambda: http_ok(proxy.health_url),
                    "nginx to reach MinIO at its new address",
                    timeout=30,
                )
                client.create_bucket(Bucket="artifacts")  # the stand-in starts empty
                client.put_object(Bucket="artifacts", Key="after", Body=b"2")
                assert second.object_keys("artifacts") == ["after"]
                body = client.get_object(Bucket="artifacts", Key="after")["Body"].read()
                assert body == b"2"
        finally:
            first.stop()
            second.stop()
