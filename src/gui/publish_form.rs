//! "Publish an image…" in the Templates place: the fields of `kiln publish` as a form (the
//! image, the bucket and its zone, the template's name, zones, description, login user,
//! boot mode, who may read the object, the credentials). Checked by the same code as the
//! command line when the user presses Publish; the run then shows in the Build place.

use crate::build::choices::{BuildChoices, CredentialsChoice};
use crate::build::publish::PublishRequest;
use crate::exoscale::zone::EXOSCALE_ZONES;

use super::theme;

/// The form's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishForm {
    /// The qcow2 image's path, as typed or chosen.
    pub image: String,
    /// The SOS bucket.
    pub bucket: String,
    /// The bucket's zone, where the template is registered first.
    pub zone: String,
    /// The template's name (`{{isotime "2006-01-02"}}` puts the date in it).
    pub name: String,
    /// Other zones that get a copy.
    pub copies: Vec<String>,
    /// The template's description.
    pub description: String,
    /// The user instances log in as.
    pub username: String,
    /// Instances boot with UEFI (else legacy BIOS).
    pub uefi: bool,
    /// The uploaded object is public-read (else private, fetched by a presigned URL).
    pub public_read: bool,
    /// Create the bucket when it is missing.
    pub bucket_create: bool,
    /// The keyring profile to use; `None`: the usual order (EXOSCALE_API_KEY/SECRET, else
    /// the default profile).
    pub profile: Option<String>,
    /// Why the last Publish was refused, each naming its field.
    pub problems: Vec<String>,
    /// A note about the file dialog (it could not be shown: type the path).
    pub note: Option<String>,
}

impl Default for PublishForm {
    fn default() -> Self {
        Self {
            image: String::new(),
            bucket: String::new(),
            zone: EXOSCALE_ZONES[0].to_string(),
            name: String::new(),
            copies: Vec::new(),
            description: String::new(),
            username: String::new(),
            uefi: false,
            public_read: false,
            bucket_create: false,
            profile: None,
            problems: Vec::new(),
            note: None,
        }
    }
}

/// The date part a new name gets, as a recipe's template names carry it.
const DATE_SUFFIX: &str = " {{isotime \"2006-01-02\"}}";

impl PublishForm {
    /// Takes the chosen image; an empty name becomes the file's stem with the date.
    pub fn set_image(&mut self, path: &std::path::Path) {
        self.image = path.display().to_string();
        self.note = None;
        if self.name.trim().is_empty()
            && let Some(stem) = path.file_stem()
        {
            self.name = format!("{}{DATE_SUFFIX}", stem.to_string_lossy());
        }
    }

    /// The request the form describes (empty optional fields left out).
    pub fn request(&self) -> PublishRequest {
        let given = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        let mut template_zones = vec![self.zone.clone()];
        template_zones.extend(self.copies.iter().filter(|z| **z != self.zone).cloned());
        PublishRequest {
            image: self.image.trim().into(),
            bucket: self.bucket.trim().to_string(),
            zone: Some(self.zone.clone()),
            name: self.name.clone(),
            template_zones,
            description: given(&self.description),
            username: given(&self.username),
            boot_mode: self.uefi.then(|| "uefi".to_string()),
            acl: self.public_read.then(|| "public-read".to_string()),
            bucket_create: self.bucket_create,
            ..PublishRequest::default()
        }
    }

    /// The credentials the form chose, as a build's choices.
    pub fn choices(&self) -> BuildChoices {
        BuildChoices {
            credentials: match &self.profile {
                Some(name) => CredentialsChoice::Profile(name.clone()),
                None => CredentialsChoice::Recipe,
            },
            ..BuildChoices::default()
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormRequest {
    /// Open the file dialog for the image.
    ChooseImage,
    /// Check the form and publish.
    Publish,
    /// Close the form.
    Close,
}

/// Draws the form; `profiles` are the keyring's profile names; `choosing` disables the
/// dialog button while a dialog is open.
pub fn publish_form_ui(
    ui: &mut egui::Ui,
    form: &mut PublishForm,
    profiles: &[String],
    choosing: bool,
) -> Option<FormRequest> {
    let palette = theme::current(ui.ctx());
    let mut request = None;
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.strong("Publish an image");
        ui.label(
            "Uploads a qcow2 image (10 GiB–1000 GiB virtual size) to a bucket, registers it as a template and copies it to other zones, as a recipe's exoscale-import does.",
        );
        egui::Grid::new("publish-form")
            .num_columns(2)
            .spacing([theme::GAP, theme::GAP / 2.0])
            .show(ui, |ui| {
                let l = ui.label("Image file");
                ui.horizontal(|ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut form.image)
                            .hint_text("/path/to/image.qcow2")
                            .desired_width(360.0),
                    )
                    .labelled_by(l.id);
                    if ui
                        .add_enabled(!choosing, egui::Button::new("Choose image…"))
                        .clicked()
                    {
                        request = Some(FormRequest::ChooseImage);
                    }
                });
                ui.end_row();
                let l = ui.label("Bucket");
                ui.add(egui::TextEdit::singleline(&mut form.bucket).desired_width(200.0))
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("Bucket zone");
                egui::ComboBox::from_id_salt("publish-zone")
                    .selected_text(form.zone.clone())
                    .show_ui(ui, |ui| {
                        for zone in EXOSCALE_ZONES {
                            ui.selectable_value(&mut form.zone, zone.to_string(), *zone);
                        }
                    })
                    .response
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("Template name");
                ui.add(egui::TextEdit::singleline(&mut form.name).desired_width(360.0))
                    .labelled_by(l.id)
                    .on_hover_text("{{isotime \"2006-01-02\"}} puts today's date in the name");
                ui.end_row();
                ui.label("Also copy to");
                ui.horizontal_wrapped(|ui| {
                    for zone in EXOSCALE_ZONES.iter().filter(|z| **z != form.zone) {
                        let mut on = form.copies.iter().any(|c| c == zone);
                        if ui.checkbox(&mut on, *zone).changed() {
                            form.copies.retain(|c| c != zone);
                            if on {
                                form.copies.push(zone.to_string());
                            }
                        }
                    }
                });
                ui.end_row();
                let l = ui.label("Description");
                ui.add(egui::TextEdit::singleline(&mut form.description).desired_width(360.0))
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("Login user");
                ui.add(
                    egui::TextEdit::singleline(&mut form.username)
                        .hint_text("debian")
                        .desired_width(200.0),
                )
                .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("Credentials");
                egui::ComboBox::from_id_salt("publish-profile")
                    .selected_text(
                        form.profile
                            .clone()
                            .unwrap_or_else(|| "environment, else the default profile".into()),
                    )
                    .show_ui(ui, |ui| {
                        ui.selectable_value(
                            &mut form.profile,
                            None,
                            "environment, else the default profile",
                        );
                        for name in profiles {
                            ui.selectable_value(&mut form.profile, Some(name.clone()), name);
                        }
                    })
                    .response
                    .labelled_by(l.id);
                ui.end_row();
                ui.label("");
                ui.vertical(|ui| {
                    ui.checkbox(&mut form.uefi, "Boot with UEFI (else legacy BIOS)");
                    ui.checkbox(
                        &mut form.public_read,
                        "Make the uploaded object public-read (else private: Exoscale gets a presigned URL)",
                    );
                    ui.checkbox(&mut form.bucket_create, "Create the bucket if it is missing");
                });
                ui.end_row();
            });
        if let Some(note) = &form.note {
            ui.colored_label(palette.warn, note);
        }
        for problem in &form.problems {
            ui.colored_label(palette.fail, problem);
        }
        ui.horizontal(|ui| {
            if ui.button("Publish").clicked() {
                request = Some(FormRequest::Publish);
            }
            if ui.button("Close").clicked() {
                request = Some(FormRequest::Close);
            }
        });
    });
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_makes_the_request_kiln_publish_would() {
        let mut form = PublishForm::default();
        form.set_image(std::path::Path::new("/srv/images/vendor-12.qcow2"));
        form.bucket = " images ".into();
        form.zone = "de-fra-1".into();
        form.copies = vec!["de-fra-1".into(), "at-vie-1".into()];
        form.username = "debian".into();
        form.uefi = true;
        let request = form.request();
        assert_eq!(
            request.image,
            std::path::Path::new("/srv/images/vendor-12.qcow2")
        );
        assert_eq!(request.name, "vendor-12 {{isotime \"2006-01-02\"}}");
        assert_eq!(request.bucket, "images");
        assert_eq!(request.template_zones, ["de-fra-1", "at-vie-1"]);
        assert_eq!(request.boot_mode.as_deref(), Some("uefi"));
        assert_eq!(request.acl, None, "private unless asked");
        assert_eq!(request.description, None);
        assert_eq!(form.choices().credentials, CredentialsChoice::Recipe);
        form.profile = Some("work".into());
        assert_eq!(
            form.choices().credentials,
            CredentialsChoice::Profile("work".into())
        );
    }

    #[test]
    fn a_chosen_image_does_not_replace_a_typed_name() {
        let mut form = PublishForm {
            name: "Mine".into(),
            ..PublishForm::default()
        };
        form.set_image(std::path::Path::new("/srv/a.qcow2"));
        assert_eq!(form.name, "Mine");
    }
}
