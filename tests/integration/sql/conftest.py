from tests.integration.sql.helpers import db  # noqa: F401 - the fixture, for every test here
