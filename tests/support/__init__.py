"""What the tests share: in-process FAKE teachers, FAKE HTTP teachers, a threaded server, and
the proxy as a real process. What bench and scripts share with the tests lives in
`cord_proxy.testing` instead (bench imports nothing from tests)."""
