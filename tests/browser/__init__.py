"""Browser tests of the playground page: Debian's chromium driven by Selenium against a real server process."""
