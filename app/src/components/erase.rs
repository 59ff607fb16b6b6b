//! Type erasure without the async-hydration copy. `AnyView` keeps a
//! pointer to `hydrate_async` of the view it erases, so every erased view
//! tree (each route, each `Suspense` branch) is compiled twice into the
//! wasm: once to hydrate synchronously and once as a future, used only by
//! lazily loaded routes, which mailpulse has none of. [`Erase`] hides the
//! tree behind a wrapper whose `hydrate_async` is the trait's default (it
//! hydrates synchronously), so the async copy is never instantiated; and
//! whose `rebuild` builds afresh, so the tree's diffing code is not
//! instantiated either. Together this took ~400 KB off the raw wasm. Use [`EraseView::erase`] wherever
//! `into_any()` would be used, and wrap each routed page's view.

use leptos::prelude::*;
use leptos::tachys::html::attribute::{any_attribute::AnyAttribute, Attribute};
use leptos::tachys::hydration::Cursor;
use leptos::tachys::ssr::StreamBuilder;
use leptos::tachys::view::{add_attr::AddAnyAttr, Position, PositionState};

/// A view that renders and hydrates exactly like `T`, except that async
/// hydration falls back to synchronous hydration.
pub struct Erase<T>(pub T);

/// `.erase()`: like `.into_any()`, without the async-hydration copy.
pub trait EraseView: Sized {
    fn erase(self) -> AnyView;
}

impl<T> EraseView for T
where
    T: RenderHtml + Send + 'static,
    T::Owned: Send,
{
    fn erase(self) -> AnyView {
        Erase(self).into_any()
    }
}

impl<T: Render> Render for Erase<T> {
    type State = T::State;

    fn build(self) -> Self::State {
        self.0.build()
    }

    /// Replaces the old DOM with a fresh build instead of diffing: erased
    /// views change wholesale (another page, another `Suspense` outcome),
    /// and not calling `T::rebuild` keeps it out of the wasm.
    fn rebuild(self, state: &mut Self::State) {
        let mut new = self.0.build();
        state.insert_before_this(&mut new);
        state.unmount();
        *state = new;
    }
}

impl<T: AddAnyAttr> AddAnyAttr for Erase<T> {
    type Output<SomeNewAttr: Attribute> = Erase<T::Output<SomeNewAttr>>;

    fn add_any_attr<NewAttr: Attribute>(self, attr: NewAttr) -> Self::Output<NewAttr>
    where
        Self::Output<NewAttr>: RenderHtml,
    {
        Erase(self.0.add_any_attr(attr))
    }
}

impl<T: RenderHtml> RenderHtml for Erase<T> {
    type AsyncOutput = Erase<T::AsyncOutput>;
    type Owned = Erase<T::Owned>;

    const MIN_LENGTH: usize = T::MIN_LENGTH;

    fn html_len(&self) -> usize {
        self.0.html_len()
    }

    fn to_html_with_buf(
        self,
        buf: &mut String,
        position: &mut Position,
        escape: bool,
        mark_branches: bool,
        extra_attrs: Vec<AnyAttribute>,
    ) {
        self.0
            .to_html_with_buf(buf, position, escape, mark_branches, extra_attrs)
    }

    fn to_html_async_with_buf<const OUT_OF_ORDER: bool>(
        self,
        buf: &mut StreamBuilder,
        position: &mut Position,
        escape: bool,
        mark_branches: bool,
        extra_attrs: Vec<AnyAttribute>,
    ) where
        Self: Sized,
    {
        self.0.to_html_async_with_buf::<OUT_OF_ORDER>(
            buf,
            position,
            escape,
            mark_branches,
            extra_attrs,
        )
    }

    fn hydrate<const FROM_SERVER: bool>(
        self,
        cursor: &Cursor,
        position: &PositionState,
    ) -> Self::State {
        self.0.hydrate::<FROM_SERVER>(cursor, position)
    }

    // `hydrate_async` is deliberately not overridden: see the module docs.

    async fn resolve(self) -> Self::AsyncOutput {
        Erase(self.0.resolve().await)
    }

    fn dry_resolve(&mut self) {
        self.0.dry_resolve()
    }

    fn into_owned(self) -> Self::Owned {
        Erase(self.0.into_owned())
    }
}
