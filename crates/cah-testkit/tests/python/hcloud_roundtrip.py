"""Drives cah-testkit's fake Hetzner API with the official `hcloud` Python library.

Run by tests/hcloud_python.rs with HCLOUD_ENDPOINT, HCLOUD_TOKEN and HCLOUD_KEY set; any
failed assertion or exception exits non-zero.
"""

import os

from hcloud import APIException, Client
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType

endpoint = os.environ["HCLOUD_ENDPOINT"]
client = Client(token=os.environ["HCLOUD_TOKEN"], api_endpoint=endpoint, poll_interval=0.05)

key = client.ssh_keys.create(name="ops", public_key=os.environ["HCLOUD_KEY"], labels={"managed-by": "ccswarm"})
assert key.fingerprint == os.environ["HCLOUD_FINGERPRINT"], key.fingerprint
assert client.ssh_keys.get_by_fingerprint(key.fingerprint).id == key.id

cx22 = client.server_types.get_by_name("cx22")
assert (cx22.cores, cx22.memory, cx22.architecture, cx22.cpu_type) == (2, 4.0, "x86", "shared"), cx22.data_model
assert {price["location"] for price in cx22.prices} == {"fsn1", "nbg1", "hel1"}
assert len(client.server_types.get_all()) >= 10
assert [location.name for location in client.locations.get_all()] == ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"]
assert client.locations.get_by_name("hil").network_zone == "us-west"

labels = {"managed-by": "ccswarm", "ccswarm/swarm": "blue"}
created = []
for index in range(3):
    response = client.servers.create(
        name=f"cah-blue-{index}",
        server_type=ServerType(name="cx22"),
        image=Image(name="ubuntu-24.04"),
        ssh_keys=[key],
        location=Location(name="fsn1"),
        labels=labels,
        user_data="#cloud-config\nruncmd: [echo hi]\n",
    )
    assert response.root_password is None
    assert response.server.status == "initializing", response.server.status
    response.action.wait_until_finished()
    for action in response.next_actions:
        action.wait_until_finished()
    created.append(response.server)

server = client.servers.get_by_id(created[0].id)
assert server.status == "running", server.status
assert server.public_net.ipv4.ip.startswith("203.0.113."), server.public_net.ipv4.ip
assert server.public_net.ipv6.network.startswith("2001:db8:"), server.public_net.ipv6.network
assert server.server_type.name == "cx22"
assert server.location.name == "fsn1"
assert server.image.name == "ubuntu-24.04"
assert server.labels == labels

page = client.servers.get_list(page=1, per_page=2)
assert len(page.servers) == 2
assert page.meta.pagination.next_page == 2 and page.meta.pagination.total_entries == 3

assert len(client.servers.get_all(label_selector="managed-by=ccswarm,ccswarm/swarm=blue")) == 3
assert client.servers.get_all(label_selector="ccswarm/swarm=green") == []
assert len(client.servers.get_all(label_selector="ccswarm/swarm in (blue,green)")) == 3

try:
    client.servers.create(name="cah-blue-0", server_type=ServerType(name="cx22"), image=Image(name="ubuntu-24.04"))
    raise AssertionError("a duplicate name was accepted")
except APIException as error:
    assert error.code == "uniqueness_error", error.code

try:
    Client(token="not-a-token", api_endpoint=endpoint).servers.get_all()
    raise AssertionError("a bad token was accepted")
except APIException as error:
    assert error.code == "unauthorized", error.code

for server in client.servers.get_all(label_selector="managed-by=ccswarm"):
    client.servers.delete(server).wait_until_finished()
client.ssh_keys.delete(key)
assert client.ssh_keys.get_all() == []

print("hcloud-python ok")
