"""Portal pages: parse the form, call a selector or service, render. A project the user is not a
member of is a 404 on every page (selectors.membership_get_for_user)."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import selectors, services
from accounts.exceptions import ServiceError
from accounts.forms import DeleteProjectForm, InviteForm, KeyCreateForm, KeyRotateForm, ProjectForm, RoleForm
from accounts.models import Role


def _apply_error(form, error: ServiceError) -> None:
    field = error.field if error.field in form.fields else None
    form.add_error(field, error.message)


def _secret_page(request, membership, api_key, secret, *, rotated_from=None):
    """The only page that ever shows a secret; never cached, never stored."""
    response = render(
        request,
        "accounts/key_created.html",
        {"membership": membership, "project": membership.project, "api_key": api_key, "secret": secret,
         "rotated_from": rotated_from},
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
    environments = [
        {"environment": env, "keys": [k for k in keys if k.environment_id == env.pk]}
        for env in selectors.environment_list(project=membership.project)
    ]
    return render(
        request,
        "accounts/project_detail.html",
        _context(membership, environments=environments, key_form=KeyCreateForm()),
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
        return _secret_page(request, membership, api_key, secret)
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
        request, "accounts/key_revoke.html", _context(membership, api_key=api_key, error=error),
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
            return _secret_page(request, membership, new_key, secret, rotated_from=api_key)
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
            invited = services.membership_invite(by=membership, email=form.cleaned_data["email"], role=form.cleaned_data["role"])
        except ServiceError as error:
            _apply_error(form, error)
            status = error.status
        else:
            messages.success(request, f"{invited.user.email} added as {invited.get_role_display().lower()}.")
            return redirect("member-list", slug=slug)
    if form.errors and status == 200:
        status = 400
    members = selectors.membership_list(project=membership.project)
    return render(
        request, "accounts/member_list.html",
        _context(membership, members=members, form=form, role_choices=Role.choices), status=status,
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
@require_POST
def member_remove(request, slug, member_id):
    membership = selectors.membership_get_for_user(user=request.user, slug=slug)
    target = selectors.membership_get(project=membership.project, pk=member_id)
    leaving = target.pk == membership.pk
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


def page_not_found(request, exception):
    """Our layout for a missing page (another tenant's project looks exactly like this)."""
    return render(request, "accounts/404.html", status=404)


def server_error(request):
    # Rendered without a request context: the failure may be in whatever a context processor needs.
    from django.http import HttpResponseServerError
    from django.template.loader import render_to_string

    return HttpResponseServerError(render_to_string("accounts/500.html"))
