"""Browser tests of the operator console (headless Debian chromium via Playwright)."""
