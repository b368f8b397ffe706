"""Portal pages: parse the form, call a selector or service, render. A project the user is not a
member of is a 404 on every page (selectors.membership_get_for_user)."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from accounts import invitations, quickstart, selectors, services
from accounts.exceptions import ServiceError
from accounts.forms import DeleteProjectForm, InviteForm, KeyCreateForm, KeyRotateForm, ProjectForm, RoleForm
from accounts.models import Invitation, Role


def _apply_error(form, error: ServiceError) -> None:
    field = error.field if error.field in form.fields else None
    form.add_error(field, error.message)


def _quickstart_context(request, project, *, environment_kind: str, secret: str = "") -> dict:
    """Snippets filled in with this server's URL (as the browser reached it), the environment's default
    deployment and, on the page that shows a new key, that key."""
    config = quickstart.QuickstartConfig(
        base_url=request.build_absolute_uri("/").rstrip("/"), api_key=secret,
        deployment_key=selectors.deployment_default_key(project=project, environment_kind=environment_kind),
    )
    note = ("Your new key is filled in below: this is the only time it is shown." if secret else
            f"For the {environment_kind} environment. Replace {quickstart.KEY_PLACEHOLDER} with a key "
            "(the page that creates a key shows these snippets with it filled in).")
    return {"snippets": quickstart.snippets_for(config), "quickstart_note": note}


SECRET_SESSION_KEY = "portal_new_key_secret"


def _secret_redirect(request, membership, api_key, secret, *, rotated_from=None):
    """Redirect after POST: the new secret waits in the session for the one page that shows it, which
    pops it. Reloading that page (or going Back) cannot create another key or show the secret again."""
    request.session[SECRET_SESSION_KEY] = {
        "key_pk": str(api_key.pk), "secret": secret, "rotated_from": str(rotated_from.pk) if rotated_from else None,
    }
    return redirect("key-created", slug=membership.project.slug, key_pk=api_key.pk)


@login_required
@require_http_methods(["GET"])
def key_created(request, slug, key_pk):
    """The only page that ever shows a secret, and only once; never cached."""
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    api_key = selectors.api_key_get(project=membership.project, pk=key_pk)
    pending = request.session.get(SECRET_SESSION_KEY)
    secret = None
    rotated_from = None
    if pending and pending.get("key_pk") == str(api_key.pk):
        del request.session[SECRET_SESSION_KEY]
        secret = pending["secret"]
        if pending.get("rotated_from"):
            rotated_from = selectors.api_key_get(project=membership.project, pk=pending["rotated_from"])
    response = render(
        request,
        "accounts/key_created.html",
        _context(membership, api_key=api_key, secret=secret, rotated_from=rotated_from,
                 **_quickstart_context(request, membership.project, environment_kind=api_key.environment.kind,
                                       secret=secret or "")),
    )
    response["Cache-Control"] = "no-store"
    return response


def _context(membership, **extra):
    return {
        "membership": membership,
        "project": membership.project,
        "can_manage": membership.role in services.MANAGER_ROLES,
        "is_owner": membership.role == Role.OWNER,
        **extra,
    }


@login_required
def project_list(request):
    projects = selectors.project_list_for_user(user=request.user).select_related("owner")
    return render(request, "accounts/project_list.html", {
        "projects": projects, "has_deleted_projects": selectors.project_archived_list(user=request.user).exists()})


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request):
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.project_create(name=form.cleaned_data["name"], owner=request.user)
        except ServiceError as error:
            _apply_error(form, error)
        else:
            messages.success(request, f"Project “{project.name}” created.")
            return redirect("project-detail", slug=project.slug)
    status = 400 if form.errors else 200
    return render(request, "accounts/project_new.html", {"form": form}, status=status)


@login_required
def project_detail(request, slug):
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    keys = list(selectors.api_key_list(project=membership.project))
    for key in keys:
        key.status = selectors.api_key_status(api_key=key)
        key.managed = selectors.api_key_is_console(api_key=key)
    environments = []
    for env in selectors.environment_list(project=membership.project):
        env_keys = [k for k in keys if k.environment_id == env.pk]
        latest_console = next((k for k in env_keys if k.managed), None)  # keys come newest first
        environments.append({
            "environment": env, "keys": env_keys,
            "console_off": latest_console is not None and latest_console.status == "revoked",
        })
    return render(
        request,
        "accounts/project_detail.html",
        _context(membership, environments=environments, key_form=KeyCreateForm(),
                 **_quickstart_context(request, membership.project, environment_kind="development")),
    )


@login_required
@require_http_methods(["GET", "POST"])
def key_new(request, slug):
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    form = KeyCreateForm(request.POST or None, initial={"environment": request.GET.get("environment", "development")})
    if request.method == "POST" and form.is_valid():
        try:
            api_key, secret = services.api_key_issue(
                by=membership,
                environment=form.cleaned_data["environment"],
                name=form.cleaned_data["name"],
                expires_at=form.cleaned_data["expires_at"],
            )
        except ServiceError as error:
            _apply_error(form, error)
            return render(request, "accounts/key_new.html", _context(membership, form=form), status=error.status)
        return _secret_redirect(request, membership, api_key, secret)
    status = 400 if form.errors else 200
    return render(request, "accounts/key_new.html", _context(membership, form=form), status=status)


@login_required
@require_http_methods(["GET", "POST"])
def key_revoke(request, slug, key_pk):
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    api_key = selectors.api_key_get(project=membership.project, pk=key_pk)
    error = None
    if request.method == "POST":
        try:
            services.api_key_revoke_by(by=membership, api_key=api_key)
        except ServiceError as exc:
            error = exc
        else:
            messages.success(request, f"Key “{api_key.name}” ({api_key.masked}) revoked.")
            return redirect("project-detail", slug=slug)
    return render(
        request, "accounts/key_revoke.html",
        _context(membership, api_key=api_key, error=error, managed=selectors.api_key_is_console(api_key=api_key)),
        status=error.status if error else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def key_rotate(request, slug, key_pk):
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    api_key = selectors.api_key_get(project=membership.project, pk=key_pk)
    form = KeyRotateForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            new_key, secret = services.api_key_rotate_by(by=membership, api_key=api_key, grace=form.cleaned_data["grace"])
        except ServiceError as error:
            _apply_error(form, error)
            status = error.status
        else:
            return _secret_redirect(request, membership, new_key, secret, rotated_from=api_key)
    if form.errors and status == 200:
        status = 400
    return render(request, "accounts/key_rotate.html", _context(membership, api_key=api_key, form=form), status=status)


@login_required
@require_http_methods(["GET", "POST"])
def member_list(request, slug):
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    form = InviteForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            invited = services.membership_invite(
                by=membership, email=form.cleaned_data["email"], role=form.cleaned_data["role"],
                invite_link_base=request.build_absolute_uri(reverse("invitation-page", kwargs={"token": "x"}))[:-2],
            )
        except ServiceError as error:
            _apply_error(form, error)
            status = error.status
        else:
            if isinstance(invited, Invitation):
                messages.success(request, f"Invitation sent to {invited.email}: they join as "
                                          f"{invited.get_role_display().lower()} once they accept.")
            else:
                messages.success(request, f"{invited.user.email} added as {invited.get_role_display().lower()}.")
            return redirect("member-list", slug=slug)
    if form.errors and status == 200:
        status = 400
    members = list(selectors.membership_list(project=membership.project))
    # The sole owner cannot leave (the service refuses): say so instead of offering a button that errors.
    sole_owner = membership.role == Role.OWNER and sum(m.role == Role.OWNER for m in members) == 1
    return render(
        request, "accounts/member_list.html",
        _context(membership, members=members, form=form, role_choices=Role.choices, sole_owner=sole_owner,
                 invitations=invitations.invitation_list_pending(project=membership.project)),
        status=status,
    )


@login_required
@require_POST
def member_role(request, slug, member_id):
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    target = selectors.membership_get(project=membership.project, pk=member_id)
    form = RoleForm(request.POST)
    try:
        if not form.is_valid():
            raise ServiceError("invalid_role", "Choose a role.")
        services.membership_change_role(by=membership, membership=target, role=form.cleaned_data["role"])
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{target.user.email} is now {target.get_role_display().lower()}.")
    return redirect("member-list", slug=slug)


@login_required
@require_http_methods(["GET", "POST"])
def member_remove(request, slug, member_id):
    """GET asks for confirmation, naming the member (or the project, when leaving); POST removes."""
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    target = selectors.membership_get(project=membership.project, pk=member_id)
    leaving = target.pk == membership.pk
    if request.method == "GET":
        return render(request, "accounts/member_remove.html", _context(membership, target=target, leaving=leaving))
    try:
        services.membership_remove(by=membership, membership=target)
    except ServiceError as error:
        messages.error(request, error.message)
        return redirect("member-list", slug=slug)
    if leaving:
        messages.success(request, f"You left “{membership.project.name}”.")
        return redirect("project-list")
    messages.success(request, f"{target.user.email} removed.")
    return redirect("member-list", slug=slug)


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request, slug):
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    form = ProjectForm(request.POST or None, initial={"name": membership.project.name})
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            services.project_rename(by=membership, name=form.cleaned_data["name"])
        except ServiceError as error:
            _apply_error(form, error)
            status = error.status
        else:
            messages.success(request, "Project renamed.")
            return redirect("project-settings", slug=slug)
    if form.errors and status == 200:
        status = 400
    return render(
        request, "accounts/project_settings.html",
        _context(membership, form=form, delete_form=DeleteProjectForm()), status=status,
    )


@login_required
@require_POST
def project_delete(request, slug):
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    delete_form = DeleteProjectForm(request.POST)
    status = 400
    if delete_form.is_valid() and delete_form.cleaned_data["confirm"] != slug:
        delete_form.add_error("confirm", "That is not this project's slug; nothing was deleted.")
    if delete_form.is_valid():
        try:
            services.project_delete(by=membership)
        except ServiceError as error:
            delete_form.add_error(None, error.message)
            status = error.status
        else:
            messages.success(request, f"Project “{membership.project.name}” deleted.")
            return redirect("project-list")
    return render(
        request, "accounts/project_settings.html",
        _context(membership, form=ProjectForm(initial={"name": membership.project.name}), delete_form=delete_form),
        status=status,
    )


@require_http_methods(["GET", "POST"])
def invitation_page(request, token):
    """The link in an invitation email: who invites you to what; Accept when signed in with the invited
    address, else sign up (the invitation is accepted when the address is verified) or sign in."""
    invitation = invitations.invitation_get(token=token)
    if request.user.is_authenticated and invitation.accepted_by_id == request.user.pk:
        # Accepted when they verified the address (sign-up brings them back here): on to the project.
        messages.success(request, f"You are a member of “{invitation.project.name}”.")
        return redirect("project-detail", slug=invitation.project.slug)
    error = None
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{reverse('account_login')}?next={request.path}")
        try:
            accepted = invitations.invitation_accept(invitation=invitation, user=request.user)
        except ServiceError as exc:
            error = exc.message
        else:
            messages.success(request, f"You joined “{accepted.project.name}” as {accepted.get_role_display().lower()}.")
            return redirect("project-detail", slug=accepted.project.slug)
    return render(request, "accounts/invitation.html", {
        "invitation": invitation, "open": invitations.invitation_is_open(invitation=invitation), "error": error,
        "matches": request.user.is_authenticated and request.user.email.lower() == invitation.email.lower(),
    }, status=409 if error else 200)


@require_POST
def verification_resend(request):
    """"Resend verification email" on the confirm-your-email page; the same answer whether or not the
    address has an account, then back to that page (redirect after POST)."""
    email = (request.POST.get("email") or "").strip()
    services.email_verification_resend(request=request, email=email)
    messages.info(request, f"If {email or 'that address'} belongs to an account waiting for verification, a new "
                           "verification email is on its way (at most one every few minutes).")
    return redirect("account_email_verification_sent")


def page_not_found(request, exception):
    """Our layout for a missing page (another tenant's project looks exactly like this)."""
    return render(request, "accounts/404.html", status=404)


def server_error(request):
    # Rendered without a request context: the failure may be in whatever a context processor needs.
    from django.http import HttpResponseServerError
    from django.template.loader import render_to_string

    return HttpResponseServerError(render_to_string("accounts/500.html"))
