import { changed, startSession, type App } from "../app.ts";
import { h, replace } from "../dom.ts";
import { errorBox } from "../errors.ts";
import { navigate } from "../nav.ts";

function field(label: string, input: HTMLInputElement, hint?: string): HTMLElement {
  const id = input.id;
  return h(
    "p",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    hint ? h("small", { id: `${id}-hint` }, hint) : null,
  );
}

export function renderSignIn(main: HTMLElement, app: App): void {
  const email = h("input", { id: "signin-email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", {
    id: "signin-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { "aria-labelledby": "signin-title", novalidate: false },
    field("Email", email),
    field("Password", password),
    submit,
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    replace(status, "Signing in…");
    try {
      await app.mirai.login({ email: email.value.trim(), password: password.value });
      await startSession(app);
      changed(app);
      navigate("/symbols/SPX");
    } catch (error) {
      replace(status, errorBox(error));
    } finally {
      submit.disabled = false;
    }
  });
  replace(
    main,
    h("h1", { id: "signin-title" }, "Sign in"),
    form,
    h("p", null, "No account yet? ", h("a", { href: "#/signup" }, "Create one"), "."),
  );
  email.focus();
}

export function renderSignUp(main: HTMLElement, app: App): void {
  const name = h("input", { id: "signup-name", name: "display_name", autocomplete: "nickname" });
  const email = h("input", { id: "signup-email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", {
    id: "signup-password",
    name: "password",
    type: "password",
    autocomplete: "new-password",
    required: true,
    minlength: 12,
    "aria-describedby": "signup-password-hint",
  });
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Create the account");
  const form = h(
    "form",
    { "aria-labelledby": "signup-title" },
    field("Display name (optional)", name),
    field("Email", email),
    field("Password", password, "12 to 128 characters; not a common password."),
    submit,
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    replace(status, "Creating the account…");
    try {
      const credentials = { email: email.value.trim(), password: password.value };
      await app.mirai.register({ ...credentials, display_name: name.value.trim() || null });
      await app.mirai.login(credentials);
      await startSession(app);
      navigate("/symbols/SPX");
    } catch (error) {
      replace(status, errorBox(error));
    } finally {
      submit.disabled = false;
    }
  });
  replace(
    main,
    h("h1", { id: "signup-title" }, "Create an account"),
    form,
    h("p", null, "Already registered? ", h("a", { href: "#/signin" }, "Sign in"), "."),
  );
  email.focus();
}
