#!/usr/bin/python3
"""A user's chat in Open WebUI through a real browser: headless Chromium
driven over WebDriver (Debian's chromium, chromium-driver, python3-selenium).

Opens BASE (its host resolved to 127.0.0.1 with --resolve), signs in with EMAIL and PASSWORD, picks MODEL in the model
selector, sends PROMPT, waits until the streamed answer is complete, saves
a screenshot, and prints one JSON line: {"chat_id", "url", "answer_chars"}.
Any step that does not happen in time exits 1 naming the step, with a
screenshot of where it stopped.

Open WebUI's page is a Svelte app that renders as it loads: every step
waits on an element, never on time alone.
"""

import argparse
import json
import sys

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def browser(args):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        # The node's certificate is its own CA's; the caller pins it with
        # curl, the browser is only told to go on.
        "--ignore-certificate-errors",
    ):
        options.add_argument(flag)
    if args.resolve:
        options.add_argument(f"--host-resolver-rules=MAP {args.resolve} 127.0.0.1")
    service = Service(executable_path="/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=options)


class Steps:
    def __init__(self, driver, shot, limit):
        self.driver = driver
        self.shot = shot
        self.limit = limit

    def wait(self, what, condition, limit=None):
        try:
            return WebDriverWait(self.driver, limit or self.limit).until(condition)
        except TimeoutException:
            self.fail(f"timed out waiting for {what}")

    def fail(self, why):
        self.driver.save_screenshot(self.shot)
        print(f"chat.py: {why} (at {self.driver.current_url}; screenshot {self.shot})", file=sys.stderr)
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--screenshot", required=True)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--resolve", help="a host name to resolve to 127.0.0.1")
    args = p.parse_args()

    driver = browser(args)
    steps = Steps(driver, args.screenshot, args.timeout)
    try:
        driver.get(args.base.rstrip("/") + "/auth")
        email = steps.wait("the sign-in form", ec.element_to_be_clickable((By.CSS_SELECTOR, "input[type=email]")))
        email.send_keys(args.email)
        password = driver.find_element(By.CSS_SELECTOR, "input[type=password]")
        password.send_keys(args.password, Keys.ENTER)

        # Signed in: the chat page with its message box.
        steps.wait("the chat page after sign-in", ec.element_to_be_clickable((By.ID, "chat-input")))

        # A first sign-in shows the release notes over the page: close them
        # as a user does.
        for button in driver.find_elements(By.XPATH, "//button[contains(., 'Okay, Let')]"):
            button.click()
            steps.wait("the release notes to close", ec.invisibility_of_element(button))

        # The model, chosen in the selector as a user does (MODEL is its id,
        # the option's data-value).
        steps.wait("the model selector", ec.element_to_be_clickable((By.ID, "model-selector-model-button"))).click()
        steps.wait(
            f"{args.model} in the model list",
            ec.element_to_be_clickable((By.CSS_SELECTOR, f"#model-selector-list [role=option][data-value='{args.model}']")),
        ).click()
        steps.wait(
            f"{args.model} chosen",
            lambda d: d.find_element(By.ID, "model-selector-model-button").get_attribute("aria-expanded") == "false",
        )

        box = driver.find_element(By.ID, "chat-input")
        box.click()
        box.send_keys(args.prompt)
        steps.wait("the send button", ec.element_to_be_clickable((By.ID, "send-message-button"))).click()

        # The answer streams into the response container; it is complete
        # when its action bar (Regenerate among them) appears under it.
        steps.wait("the chat's address", ec.url_contains("/c/"))
        steps.wait("an answer", ec.presence_of_element_located((By.ID, "response-content-container")))
        steps.wait("the answer to finish", ec.visibility_of_element_located((By.CSS_SELECTOR, "button[aria-label='Regenerate']")))
        answer = driver.find_element(By.ID, "response-content-container").text
        driver.save_screenshot(args.screenshot)
        url = driver.current_url
        chat_id = url.split("/c/", 1)[1].split("?", 1)[0].split("#", 1)[0]
        print(json.dumps({"chat_id": chat_id, "url": url, "answer_chars": len(answer)}))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
