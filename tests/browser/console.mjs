// The console test's browser: Debian's headless Chromium, driven by
// playwright-core, uses /console as a person would — pastes the key, sends
// password-reset from the template form, watches its events arrive live,
// opens its timeline and previews a template — and saves a screenshot.
// Arguments: the server's URL, an API key, the screenshot's path. Prints
// what the page showed as one JSON object; exits non-zero when a step
// does not happen within its timeout.

import { chromium } from "playwright-core";

const [baseUrl, key, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.POSTHORN_CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("requestfailed", (request) => {
    // Leaving the page ends the live stream; that is not a failure.
    if (!request.url().includes("WatchMessages")) problems.push(`request failed: ${request.url()}`);
  });

  await page.goto(`${baseUrl}/console`);
  await page.fill("#key", key);
  await page.click("#key-form button");
  await page.waitForSelector("#connection.ok", { timeout: 15000 });
  await page.waitForSelector("#live-state.live", { timeout: 15000 });
  await page.waitForSelector('#send-template option[value="password-reset"]', { state: "attached", timeout: 15000 });
  await page.selectOption("#send-template", "password-reset");
  const variables = await page.$$eval("#send-variables input", (inputs) => inputs.map((i) => i.name));
  await page.fill('#send-variables input[name="reset_url"]', "https://app.example.com/reset?t=console");

  await page.click("#send-form button[type=submit]");
  await page.waitForSelector("#send-result.ok", { timeout: 15000 });
  const id = await page.getAttribute("#send-result", "data-message-id");

  // The live stream shows the message's events as they happen.
  await page.waitForSelector(`#events li[data-message-id="${id}"][data-type="delivered"]`, { timeout: 30000 });
  const live = await page.$$eval(`#events li[data-message-id="${id}"]`, (items) =>
    items.map((i) => i.getAttribute("data-type")).reverse(),
  );
  // The messages table follows the stream.
  await page.waitForSelector(`tr[data-message-id="${id}"] td.status.delivered`, { timeout: 15000 });

  // Its timeline.
  await page.click(`tr[data-message-id="${id}"] button`);
  await page.waitForSelector(`.timeline[data-message-id="${id}"] li[data-type="delivered"]`, { timeout: 15000 });
  const timeline = await page.$$eval(`.timeline[data-message-id="${id}"] li`, (items) =>
    items.map((i) => i.getAttribute("data-type")),
  );

  // A template preview, rendered with its examples.
  await page.click('#template-list button[data-slug="welcome"]');
  await page.waitForFunction(() => document.querySelector("#preview-frame")?.srcdoc.includes("<html"), null, {
    timeout: 15000,
  });
  const caption = await page.textContent("#preview-caption");

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ id, variables, live, timeline, caption, problems }));
} finally {
  await browser.close();
}
