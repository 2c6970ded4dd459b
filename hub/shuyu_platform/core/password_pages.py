"""The hub's login page for initial passwords, and its password-change page.

An initial password (handed over by the operator when a registration is approved)
opens no session: the login page checks it and, instead of signing its holder in, shows
the password-change form. ``/hub/change-password`` changes a password, signed in or not
(the current password is asked for either way, and counts towards the lockout like a
login); a new password must follow :func:`.accounts.password_problems`. Every change is
audited as ``auth.password_change``; a signed-out change signs its holder in.
"""

from __future__ import annotations

from jupyterhub.handlers.base import BaseHandler
from jupyterhub.handlers.login import LoginHandler
from jupyterhub.utils import url_path_join

from .accounts import AccountError, ShuyuAuthenticator

#: Shown when the current password is wrong (or the account locked, or unknown).
WRONG = (
    "用户名或当前密码不正确，或账户已被暂时锁定。"
    "Wrong user name or password, or the account is locked for now."
)


class ShuyuLoginHandler(LoginHandler):
    """The hub's login page; an initial password leads to the password-change form."""

    async def post(self) -> None:
        authenticator: ShuyuAuthenticator = self.authenticator
        name = authenticator.normalize_username(self.get_argument("username", "", strip=True))
        account = authenticator.store.load().get(name)
        if account is None or not account.must_change_password:
            await super().post()
            return
        checked = await authenticator.check(
            self, name, self.get_argument("password", "", strip=False)
        )
        if checked is None:
            self.set_status(403)
            self.finish(await self._render(login_error=WRONG, username=name))
            return
        await authenticator.record(name, "denied", {"reason": "initial password must be changed"})
        self.finish(await change_form(self, name, forced=True))


async def change_form(
    handler: BaseHandler, name: str, *, forced: bool = False, error: str = ""
) -> str:
    """The password-change page for ``name``."""
    return await handler.render_template(
        "change_password.html",
        username=name,
        signed_in=handler.current_user is not None,
        forced=forced,
        error=error,
        next=handler.get_argument("next", ""),
        xsrf=handler.xsrf_token.decode("ascii"),
        change_url=url_path_join(handler.hub.base_url, "change-password"),
    )


class ChangePasswordHandler(BaseHandler):
    """``/hub/change-password``: choose a new password (see the module docstring)."""

    async def get(self) -> None:
        user = self.current_user
        self.finish(
            await change_form(self, user.name if user else self.get_argument("username", ""))
        )

    async def post(self) -> None:
        authenticator: ShuyuAuthenticator = self.authenticator
        user = self.current_user
        name = (
            user.name
            if user
            else authenticator.normalize_username(self.get_argument("username", "", strip=True))
        )
        current = self.get_argument("current_password", "", strip=False)
        new = self.get_argument("new_password", "", strip=False)
        forced = self.get_argument("forced", "") == "yes"
        account = await authenticator.check(self, name, current)
        error = ""
        if account is None:
            error = WRONG
        elif new != self.get_argument("confirm_password", "", strip=False):
            error = "两次输入的新密码不一致。The new passwords differ."
        elif new == current:
            error = "新密码不能与当前密码相同。Choose a password other than the current one."
        else:
            try:
                authenticator.store.set_password(name, new)
            except AccountError as err:
                error = f"新密码不符合要求 The new password needs: {err}"
        if error:
            self.set_status(403 if account is None else 400)
            self.finish(await change_form(self, name, forced=forced, error=error))
            return
        await authenticator.record(
            name, "ok", {"initial": bool(account and account.must_change_password)},
            tenant=account.tenant if account else None, action="auth.password_change",
        )  # fmt: skip
        if user is None:
            signed_in = await self.login_user({"username": name, "password": new})
            self.redirect(self.get_next_url(signed_in))
            return
        done = await self.render_template(
            "change_password.html", username=name, done=True, signed_in=True, change_url=""
        )
        self.finish(done)
