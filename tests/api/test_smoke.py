"""The app answers, logins work, the OpenAPI description is there."""

from __future__ import annotations

from support.api import Box


def test_health_needs_no_login(box: Box) -> None:
    r = box.lan.get("/system/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_version_needs_a_token(box: Box) -> None:
    assert box.lan.get("/system/version").status_code == 401
    r = box.lan.get("/system/version", headers=box.login("viewer"))
    assert r.status_code == 200 and r.json()["version"]


def test_openapi(box: Box) -> None:
    spec = box.lan.get("/openapi.json").json()
    assert "/config" in spec["paths"]


PUBLIC_PATHS = {"/system/health", "/auth/login", "/auth/bootstrap", "/setup/welcome"}


def test_openapi_is_complete(box: Box) -> None:
    """Every operation documents its success body and its errors, with models."""
    spec = box.lan.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"ErrorOut", "ValidationOut", "FieldError"} <= set(schemas)
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    count = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            count += 1
            where = f"{method.upper()} {path}"
            assert op.get("summary") and op.get("tags"), where
            codes = set(op["responses"])
            ok = [c for c in codes if c.startswith("2")]
            assert ok, where
            for code in ok:
                if code != "204":
                    assert op["responses"][code].get("content"), where
            if path not in PUBLIC_PATHS:
                assert {"401", "403"} <= codes, where
                assert op.get("security") == [{"HTTPBearer": []}], where
            for code in codes - {"200", "201", "204", "206"}:
                ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith(("ErrorOut", "ValidationOut", "HTTPValidationError")), where
    assert count >= 30
